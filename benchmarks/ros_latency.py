"""
adapter_node latency over real DDS at 100 Hz with adaptation running, and update time.

A probe process plays the robot: joint_states + goal at 200 Hz; adapter_node (its own process,
reacher checkpoint, adapt on, one episode of 50 steps per update so it adapts every 0.5 s)
publishes commands at 100 Hz, state-triggered (the default: each command is computed when a
joint_states message arrives, every other message at 200 Hz) or timer-driven. Reported: the
node's own JointState-receipt to command-publish latency (p50/p99/max, from /diagnostics), the
probe-observed latency (last JointState sent to command received: adds DDS both ways and, in
timer mode, the wait for the next tick), deadline misses (command gaps > 1.5 periods), and the
inner_step update time (in the node, and offline on CPU).

Run: .venv/bin/python benchmarks/ros_latency.py [--trigger state|timer] [--seconds 20]
[--domain ID] [--out FILE.md]. The ROS_DOMAIN_ID is taken from maml_robot.ros.domains (as the
tests take theirs) unless ``--domain`` names one.
"""

import argparse
import os
from pathlib import Path
import tempfile
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from maml_robot.checkpoint import save_checkpoint
from maml_robot.commands import arguments
import maml_robot.online as online
from maml_robot.ros.domains import domain_id
from maml_robot.ros.launcher import node_command, NodeProcesses
from maml_robot.scenario import load_scenario
from maml_robot.sim.world import World
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
import torch

RATE_HZ = 100.0
START_TIMEOUT = 120.0
"""Seconds adapter_node may take to become active (torch import, checkpoint load, warm-up)."""


def offline_update_seconds(ckpt_path, repeats=20):
    """Time one online update (2 live episodes x 50 steps, reacher policy) on CPU."""
    torch.set_num_threads(1)
    config = online.OnlineConfig(synchronous=True, ramp_in_steps=0, fade_in_steps=0,
                                 rollouts_per_step=1000)   # the most: no update of its own
    adapter = online.load_adapter(ckpt_path, config, log=lambda m: None)
    world = World(adapter_scenario())
    world.reset(np.random.default_rng(0))
    for _ in range(2 * 50 + 1):
        cmd = adapter.act(world.measured_state(), 0.0)
        world.apply_action(cmd.action)
        world.step()
    world.close()
    episodes = adapter._batch[-2:]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        adapter._compute_update(adapter.params, episodes)
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def adapter_scenario():
    return load_scenario('reacher')


def run_probe(domain, seconds, check_alive):
    """
    Publish joint_states at 2x the control rate; record commands and diagnostics.

    The probe starts once the node is active (its first /diagnostics message), and
    ``check_alive()`` raises if the node exits while it waits.
    """
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('latency_probe', context=context)
    joints = node.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
    goal = node.create_publisher(PointStamped, 'goal', 10)
    sent, commands, diags = [], [], []
    node.create_subscription(Float64MultiArray, '/forward_effort_controller/commands',
                             lambda m: commands.append(time.perf_counter()), 10)
    node.create_subscription(DiagnosticArray, '/diagnostics',
                             lambda m: diags.append({kv.key: kv.value
                                                     for kv in m.status[0].values}), 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        deadline = time.perf_counter() + START_TIMEOUT
        while not diags:
            check_alive()
            if time.perf_counter() > deadline:
                raise SystemExit(f'adapter_node sent no /diagnostics in {START_TIMEOUT:g} s')
            time.sleep(0.1)
        sent = publish_states(joints, goal, seconds)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        thread.join(2.0)
    return np.asarray(sent), np.asarray(commands), diags


def publish_states(joints, goal, seconds):
    """Publish joint_states and goal at 2x the control rate for ``seconds``; return send times."""
    rng = np.random.default_rng(0)
    sent = []
    end = time.perf_counter() + seconds
    due = time.perf_counter()   # clock-driven like a state broadcaster: 200 Hz on average
    while time.perf_counter() < end:
        q = rng.uniform(-1, 1, 2)
        joints.publish(JointState(name=['elbow_joint', 'shoulder_joint'], position=list(q),
                                  velocity=list(rng.normal(0, 1, 2))))
        g = PointStamped()
        g.point.x, g.point.y, g.point.z = 0.1, 0.1, 0.03
        goal.publish(g)
        sent.append(time.perf_counter())
        due += 0.5 / RATE_HZ
        time.sleep(max(0.0, due - time.perf_counter()))
    return sent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--seconds', type=float, default=20.0,
                        help='seconds of probing (the first is not counted; default 20)')
    parser.add_argument('--trigger', default='state', choices=('state', 'timer'),
                        help="the adapter's trigger parameter")
    parser.add_argument('--note', default='',
                        help='free text recorded with the result (e.g. what else was running)')
    parser.add_argument('--domain', type=arguments.domain_id, default=None,
                        help='ROS_DOMAIN_ID of the probe and the node (default: one no test '
                        'run or other benchmark on this machine holds)')
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results' /
                                             'ros_latency.md'))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='ros_latency_'))
    ckpt = tmp / 'reacher.safetensors'
    save_checkpoint(ckpt, online.fresh_checkpoint(adapter_scenario(), seed=0))
    domain = args.domain if args.domain is not None else domain_id()
    print(f'ROS_DOMAIN_ID {domain}', flush=True)
    argv = node_command('adapter_node', overrides={
        'checkpoint': str(ckpt), 'control_rate_hz': RATE_HZ, 'adapt': True,
        'trigger': args.trigger,
        'rollouts_per_step': 1, 'accept_window': 1, 'episode_steps': 50,
        'ramp_in_steps': 0, 'fade_in_steps': 0, 'diagnostics_period': 1.0})
    with NodeProcesses(domain, log_dir=tmp) as procs:
        procs.start('adapter_node', argv)
        sent, commands, diags = run_probe(domain, args.seconds, procs.check_alive)
        procs.check_alive()
    commands = commands[commands > sent[0] + 1.0]       # skip the first second
    if len(commands) < 2:
        raise SystemExit(f'{len(commands)} commands after the first second of {args.seconds:g} '
                         f's: too few to measure; run longer (--seconds) or see '
                         f'{tmp}/adapter_node.log')
    idx = np.searchsorted(sent, commands) - 1
    e2e = (commands - sent[idx]) * 1e3
    gaps = np.diff(commands)
    misses = int((gaps > 1.5 / RATE_HZ).sum())
    last = diags[-1]
    node_updates = [float(d['last_update_seconds']) for d in diags
                    if d['last_update_seconds'] != 'nan']
    offline = offline_update_seconds(ckpt) * 1e3
    lines = [
        f'# adapter_node latency (100 Hz, adaptation running, trigger {args.trigger})', '',
        f'Command: `.venv/bin/python benchmarks/ros_latency.py --trigger {args.trigger} '
        f'--seconds {args.seconds:g}`',
        f'Measured {time.strftime("%Y-%m-%d %H:%M")} on {os.cpu_count()} CPU cores, torch '
        f'{torch.__version__}, rclpy (PyPI wheels, Fast DDS), reacher policy 64x64, '
        f'torch_threads 1. {args.note}', '',
        '| metric | value |', '|---|---|',
        f'| commands received | {len(commands)} over {args.seconds - 1:g} s '
        f'({len(commands) / (args.seconds - 1):.1f} Hz; joint_states sent at '
        f'{len(sent) / args.seconds:.1f} Hz) |',
        f'| node latency p50 / p99 / max (JointState receipt -> command publish; timer mode '
        f'includes the wait for the next tick) | '
        f'{float(last["latency_p50_ms"]):.2f} / {float(last["latency_p99_ms"]):.2f} / '
        f'{float(last["latency_max_ms"]):.2f} ms (last 500 steps) |',
        f'| probe-observed p50 / p99 (newest JointState sent before a command -> that command '
        f'received) | '
        f'{np.percentile(e2e, 50):.2f} / {np.percentile(e2e, 99):.2f} ms |',
        f'| deadline misses (gap > 15 ms between commands) | {misses} of {len(gaps)} '
        f'({100.0 * misses / max(len(gaps), 1):.2f} %) |',
        f'| command interval p50 / p99 / max | {np.percentile(gaps, 50) * 1e3:.2f} / '
        f'{np.percentile(gaps, 99) * 1e3:.2f} / {gaps.max() * 1e3:.2f} ms |',
        f'| adaptation updates during the run | {last["adaptations"]} (+ '
        f'{last["rollbacks"]} rolled back) |',
        f'| update time in the node (its own thread), last seen | '
        f'{np.median(node_updates) * 1e3 if node_updates else float("nan"):.1f} ms (median '
        'of the per-second samples) |',
        f'| update time offline, 2 episodes x 50 steps: first call (warm-up) | '
        f'{offline[0]:.1f} ms |',
        f'| update time offline, 2 episodes x 50 steps: p50 / max of the next 19 | '
        f'{np.percentile(offline[1:], 50):.1f} / {offline[1:].max():.1f} ms (target <= 100 ms) |',
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
