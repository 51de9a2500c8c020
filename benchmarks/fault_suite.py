"""
Fault injection on the deployment path (issue 18): every input is answered without harm.

Forged checkpoints, robot descriptions (URDFs) that differ from the checkpoint's robot, bad
``--set`` overrides, params files and command-line numbers, bad runtime parameter changes,
joint_states streams with broken stamps and values (1 kHz into a 25 Hz adapter_node,
driven in process on a fake monotonic clock), and absurd rewards into the online adapter. It
counts the inputs tried, the clear errors (a ValueError with a message, or a refused parameter
change), tracebacks (any other exception), hangs (a case over ``HANG_SECONDS``), commands
beyond the scenario's effort limits, commands above the control rate (more than rate + 2 in a
1 s window), non-finite commands, and runs that lost completed work. The 'ray' section
(benchmarks/fault_ray.py) breaks a real 2-node Ray cluster under ``maml-robot train``. Run:

    PYTHONPATH=. .venv/bin/python benchmarks/fault_suite.py [--seed 0] [--seconds 3] \
        [--only SECTION] [--domain ID] [--out benchmarks/results/fault_suite.md]

The in-process adapter nodes share one ROS_DOMAIN_ID, taken from maml_robot.ros.domains (as the
tests take theirs) unless ``--domain`` names one.
"""

import argparse
import dataclasses
import datetime
import json
from pathlib import Path
import sys
import tempfile
import threading
import time
import traceback

from fault_ray import ray_cases
from maml_robot.commands import arguments
from maml_robot.ros.domains import domain_id
import numpy as np

HANG_SECONDS = 60.0
SECTIONS = ('checkpoints', 'overrides', 'runtime', 'joint_states', 'rewards', 'ray')
RATE_HZ = 25.0
STATE_HZ = 1000


@dataclasses.dataclass
class Tally:
    """What the suite counted."""

    inputs: int = 0
    clear_errors: int = 0
    tracebacks: int = 0
    hangs: int = 0
    accepted_bad: int = 0
    commands: int = 0
    over_limits: int = 0
    above_rate: int = 0
    non_finite: int = 0
    lost: int = 0
    """Runs that ended without saving work they had completed (iterations, result files)."""
    notes: list = dataclasses.field(default_factory=list)
    ray_rows: list = dataclasses.field(default_factory=list)
    """Markdown rows of the Ray cluster cases (benchmarks/fault_ray.py)."""


def attempt(tally, what, fn, bad=True):
    """Run one input; count a clear error, a traceback, a hang, or a bad input accepted."""
    tally.inputs += 1
    started = time.monotonic()
    try:
        fn()
        if bad:
            tally.accepted_bad += 1
            tally.notes.append(f'accepted: {what}')
    except (ValueError, SystemExit) as err:
        tally.clear_errors += 1 if str(err) else 0
    except Exception:    # noqa: B902 - counting them is the point
        tally.tracebacks += 1
        tally.notes.append(f'traceback: {what}: {traceback.format_exc(limit=3)}')
    if time.monotonic() - started > HANG_SECONDS:
        tally.hangs += 1
        tally.notes.append(f'hang: {what}')


def forged_checkpoints(folder):
    """Yield (name, path) of checkpoints with one fault each (written without validation)."""
    from maml_robot import online
    from maml_robot.checkpoint import _metadata, METADATA_KEY
    from maml_robot.scenario import load_scenario
    import safetensors.torch
    import torch
    base = online.fresh_checkpoint(load_scenario('reacher'), seed=0)
    changes = {
        'action_scale 1e30': {'action_scale': (1e30, 1e30)},
        'action_scale x2': {'action_scale': (0.2, 0.2)},
        'control_period 1e-9': {'control_period': 1e-9},
        'joints swapped': {'joint_names': ('shoulder_joint', 'elbow_joint')},
        'obs_std 0': {'obs_std': torch.zeros_like(base.obs_std)},
        'params NaN': {'params': {k: v * np.nan for k, v in base.params.items()}}}
    for dtype in (torch.float64, torch.float16, torch.int64, torch.bfloat16):
        changes[f'params {dtype}'] = {'params': {k: v.to(dtype) for k, v in base.params.items()}}
    for name, change in changes.items():
        ckpt = dataclasses.replace(base, **change)
        tensors = {f'params.{k}': v.contiguous() for k, v in ckpt.params.items()}
        tensors.update(obs_mean=ckpt.obs_mean, obs_std=ckpt.obs_std)
        path = Path(folder) / f'{len(name)}_{abs(hash(name))}.safetensors'
        path.write_bytes(safetensors.torch.save(tensors, metadata={
            'format': 'pt', METADATA_KEY: json.dumps(_metadata(ckpt))}))
        yield name, path
    junk = Path(folder) / 'junk.safetensors'
    junk.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": 1}')
    yield 'junk bytes', junk


def checkpoint_cases(tally, folder):
    """Load every forged checkpoint into an adapter: each must be a clear error."""
    from maml_robot import online
    for name, path in forged_checkpoints(folder):
        attempt(tally, f'checkpoint {name}',
                lambda p=path: online.load_adapter(p, online.OnlineConfig()))


def description_cases(tally):
    """Robot descriptions (URDF text) that differ from the checkpoint's robot: clear errors."""
    import re
    from maml_robot import online
    from maml_robot.online.robot_limits import robot_limited_spec, robot_model
    from maml_robot.paths import data_path
    from maml_robot.scenario import load_scenario
    scenario = load_scenario('reacher')
    spec = online.spec_from_checkpoint(online.fresh_checkpoint(scenario, seed=0), scenario)
    urdf = data_path('urdf', 'reacher.urdf').read_text()

    def limit(attribute, value, joint='elbow_joint'):
        start = urdf.index(f'<joint name="{joint}"')
        end = urdf.index('</joint>', start)
        block = re.sub(rf'{attribute}="[^"]*"', f'{attribute}="{value}"', urdf[start:end], 1)
        return urdf[:start] + block + urdf[end:]
    texts = {'effort 0.05': limit('effort', '0.05'), 'effort 1e30': limit('effort', '1e30'),
             'effort 0': limit('effort', '0'), 'velocity 5': limit('velocity', '5'),
             'lower -1': limit('lower', '-1', 'shoulder_joint'), 'upper 9': limit('upper', '9'),
             'continuous': limit('type', 'continuous'), 'prismatic': limit('type', 'prismatic'),
             'renamed joint': urdf.replace('"elbow_joint"', '"elbow"'),
             'fixed joint': limit('type', 'fixed'), 'effort abc': limit('effort', 'abc'),
             'not XML': urdf[:200], 'empty': '', 'not a robot': '<model name="x"/>'}
    for name, text in texts.items():
        attempt(tally, f'robot_description {name}', lambda t=text: robot_limited_spec(
            spec, scenario, robot_model(text=t), 'robot_description', 0.01))


def params_file_cases(tally, folder):
    """Params files with a wrong type, range or name, or no params file at all: clear errors."""
    from maml_robot.ros import launcher
    from maml_robot.ros.params_file import check_params_file
    bad = {'adapter_node': ['control_rate_hz: abc', 'control_rate_hz: 25', 'state_timeout: [1]',
                            "max_param_delta: '1e-3'", 'steps_per_batch: 1.5',
                            'steps_per_batch: 0',
                            "adapt: 'true'", 'checkpoint: 123', 'trigger: bogus',
                            'max_parm_delta: 0.1', 'rate: {limit: 0.1}', 'seed: -1',
                            'limit_tolerance: .nan', 'robot_description_timeout: -1.0'],
           'sim_node': ['real_time_factor: fast', 'task_splitt: ood', 'task_index: 1.0']}
    path = Path(folder) / 'params.yaml'
    for node, items in bad.items():
        table = launcher.node_parameters(node)
        for item in items:
            path.write_text('/**:\n  ros__parameters:\n    ' + item + '\n')
            attempt(tally, f'params file {item} ({node})',
                    lambda t=table, n=node: check_params_file(path, n, t))
    for content in (b'\xff\xfe\x00 binary', b'a: [1', b'- 1\n', b'/**:\n  x: 1\n'):
        path.write_bytes(content)
        attempt(tally, f'params file {content[:12]!r}',
                lambda: check_params_file(path, 'adapter_node',
                                          launcher.node_parameters('adapter_node')))


def override_cases(tally):
    """Bad ``--set`` items and command-line numbers: each must be a clear error."""
    from maml_robot.ros import launcher
    bad = {'adapter_node': ['control_rate_hz=abc', 'max_parm_delta=1e-3', 'state_timeout=-1',
                            'state_timeout=nan', 'steps_per_batch=1.5', 'adapt=maybe',
                            'trigger=bogus', 'reward_source=camera', 'seed=-1', '=3', 'x'],
           'sim_node': ['real_time_factor=fast', 'task_splitt=ood', 'task_split=val',
                        'task_index=-1', 'auto_reset=2']}
    for node, items in bad.items():
        table = launcher.node_parameters(node)
        for item in items:
            attempt(tally, f'--set {item} ({node})',
                    lambda i=item, t=table: launcher.parse_overrides([i], t))
    for kind, text in (('positive_int', '0'), ('positive_int', '-3'), ('positive_int', 'x'),
                       ('domain_id', '-5'), ('domain_id', '233'), ('domain_id', 'abc')):
        def parse(k=kind, t=text):
            try:
                getattr(arguments, k)(t)
            except argparse.ArgumentTypeError as err:
                raise ValueError(str(err)) from err
        attempt(tally, f'{kind} {text}', parse)


class Driver:
    """adapter_node configured and activated in process; the commands are recorded."""

    def __init__(self, checkpoint, domain, **params):
        import rclpy
        from rclpy.parameter import Parameter
        from maml_robot.ros.adapter_node import AdapterNode
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        values = dict(checkpoint=str(checkpoint), adapt=False, ramp_in_steps=0,
                      fade_in_steps=0, control_rate_hz=RATE_HZ, robot_description_timeout=0.0,
                      **params)
        self.node = AdapterNode(context=self.context, parameter_overrides=[
            Parameter(k, value=v) for k, v in values.items()])
        self.clock = [1000.0]
        self.node._monotonic = lambda: self.clock[0]
        self.commands = []        # (fake time, efforts)

    def start(self):
        """Configure and activate; commands are recorded instead of published."""
        self.node.trigger_configure()
        self.node.trigger_activate()
        self.node.command_pub.publish = lambda m: self.commands.append(
            (self.clock[0], np.asarray(m.data, dtype=np.float64)))
        from geometry_msgs.msg import PointStamped
        goal = PointStamped()
        goal.point.x, goal.point.y, goal.point.z = 0.1, 0.1, 0.03
        self.node._on_goal(goal)

    def close(self):
        """Destroy the node and its context."""
        import rclpy
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


STAMPS = ('wall', 'backwards', 'jitter', 'duplicated', 'future', 'zero', 'frozen')
VALUES = ('clean', 'position 1e30', 'position -1e30', 'position 50', 'position nan',
          'velocity inf', 'velocity 1e30', 'velocity 1000', 'duplicate joint', 'missing joint',
          'short position', 'extra joints', 'empty')


def stamp_of(pattern, i, rng):
    """Return the header stamp (s) of message ``i`` of a 1 kHz stream with ``pattern``."""
    t = 100.0 + i / STATE_HZ
    return {'wall': t, 'backwards': 1000.0 - i / STATE_HZ, 'jitter': t + rng.uniform(-.01, .01),
            'duplicated': 100.0 + (i // 2) * 2 / STATE_HZ, 'zero': 0.0, 'frozen': 123.0,
            'future': 1e9 if i % 500 == 7 else t}[pattern]


def joint_msg(kind, stamp, rng):
    """Return a JointState with one value fault (``kind``) about a fifth of the time."""
    from sensor_msgs.msg import JointState
    names, pos, vel = ['elbow_joint', 'shoulder_joint'], [0.3, -0.4], [0.1, 0.2]
    pos = [p + rng.normal(0, 0.05) for p in pos]
    if kind != 'clean' and rng.random() < 0.2:
        what, _, value = kind.partition(' ')
        if what in ('position', 'velocity'):
            (pos if what == 'position' else vel)[int(rng.integers(2))] = float(value)
        elif kind == 'duplicate joint':
            names, pos, vel = names + ['elbow_joint'], pos + [2.0], vel + [0.0]
        elif kind == 'missing joint':
            names, pos, vel = names[:1], pos[:1], vel[:1]
        elif kind == 'short position':
            pos = pos[:1]
        elif kind == 'extra joints':
            names, pos, vel = names + ['x'], pos + [1e30], vel + [np.nan]
        else:
            names, pos, vel = [], [], []
    msg = JointState(name=names, position=pos, velocity=vel)
    msg.header.stamp.sec = int(stamp)
    msg.header.stamp.nanosec = int((stamp - int(stamp)) * 1e9) % 1000000000
    return msg


def check_commands(tally, what, commands, limit):
    """Count commands beyond the limits, non-finite, or above the rate in any 1 s window."""
    times = np.array([t for t, _ in commands])
    tally.commands += len(commands)
    for _, effort in commands:
        if not np.all(np.isfinite(effort)):
            tally.non_finite += 1
        elif np.any(np.abs(effort) > limit * (1 + 1e-9)):
            tally.over_limits += 1
    counts = np.searchsorted(times, times + 1.0, side='left') - np.arange(len(times))
    over = int(np.sum(counts[times + 1.0 <= times[-1] + 1e-9] > RATE_HZ + 2)) if len(
        times) else 0
    if over:
        tally.above_rate += 1
        tally.notes.append(f'above rate: {what}: {int(counts.max())} commands in 1 s')


def stream_cases(tally, checkpoint, domain, seconds, rng):
    """Every stamp pattern x value fault, ``seconds`` of 1 kHz states each."""
    limit = np.array([0.1, 0.1])
    for pattern, kind in ((p, k) for p in STAMPS for k in VALUES):
        driver = Driver(checkpoint, domain)
        try:
            driver.start()

            def feed(d=driver, p=pattern, k=kind):
                for i in range(int(seconds * STATE_HZ)):
                    d.clock[0] += 1.0 / STATE_HZ
                    d.node._on_joints(joint_msg(k, stamp_of(p, i, rng), rng))
            attempt(tally, f'stream {pattern} stamps, {kind}', feed, bad=False)
            check_commands(tally, f'{pattern}/{kind}', driver.commands, limit)
            tally.inputs += int(seconds * STATE_HZ) - 1
        finally:
            driver.close()


def param_cases(tally, checkpoint, domain):
    """Runtime parameter changes that cannot apply: each must be refused with a reason."""
    from rclpy.parameter import Parameter
    running = [('control_rate_hz', 5.0), ('trigger', 'bogus'), ('trigger', 'timer'),
               ('checkpoint', '/nonexistent.safetensors'), ('reward_source', 'camera'),
               ('steps_per_batch', 7), ('rate_limit', 5.0), ('state_timeout', float('nan')),
               ('use_sim_time', True)]
    idle = [('checkpoint', '/nonexistent.safetensors'), ('trigger', 'bogus'),
            ('steps_per_batch', 0)]
    for active, cases in ((True, running), (False, idle)):
        driver = Driver(checkpoint, domain)
        try:
            if active:
                driver.start()
            for name, value in cases:
                def change(d=driver, n=name, v=value):
                    result = d.node.set_parameters([Parameter(n, value=v)])[0]
                    if not result.successful:
                        raise ValueError(result.reason)
                attempt(tally, f'set {name}={value!r} ({"active" if active else "idle"})',
                        change)
        finally:
            driver.close()


def reward_cases(tally, rng):
    """Absurd rewards into an adapter that adapts on its own thread: it must keep going."""
    from maml_robot import online
    from maml_robot.observation import RobotState
    from maml_robot.policy import GaussianPolicy, PolicyConfig
    crashes = []
    hook, threading.excepthook = threading.excepthook, crashes.append
    patterns = {'1e308': [1e308], 'nan': [np.nan], '-inf': [-np.inf],
                'alternating 1e308': [1e308, -1e308], 'beyond limit': [1e6 + 1],
                'mixed': [-1.0, 1e308, -1.0, np.nan, -1.0]}
    try:
        for name, cycle in patterns.items():
            policy = GaussianPolicy(PolicyConfig(obs_dim=2, act_dim=2, hidden_sizes=(8,)))
            spec = online.AdapterSpec(joint_names=('a', 'b'), action_scale=np.ones(2),
                                      episode_steps=10, observe=lambda s: s.joint_position,
                                      reward=lambda *a: 0.0)
            adapter = online.OnlineAdapter(
                policy, policy.init_params(0), spec, online.OnlineConfig(
                    rollouts_per_step=2, ramp_in_steps=0, fade_in_steps=0),
                log=lambda m: None)
            efforts = []

            def run(a=adapter, c=cycle, out=efforts):
                for i in range(400):
                    state = RobotState(rng.normal(size=2), np.zeros(2))
                    out.append((i * 0.04, a.act(state, 0.0, reward=c[i % len(c)]).effort))
                a.wait_idle(10.0)
                if np.isinf(a.stats['meta_return']):
                    raise RuntimeError(f'meta_return {a.stats["meta_return"]}')
            attempt(tally, f'rewards {name}', run, bad=False)
            check_commands(tally, f'rewards {name}', efforts, np.ones(2))
    finally:
        threading.excepthook = hook
    tally.tracebacks += len(crashes)
    tally.notes += [f'adaptation thread died: {c.exc_value!r}' for c in crashes]


def report(rows, args, seconds):
    """Return the markdown report."""
    cols = ('inputs', 'clear_errors', 'tracebacks', 'hangs', 'accepted_bad', 'commands',
            'over_limits', 'above_rate', 'non_finite', 'lost')
    lines = ['# Fault suite (issue 18)', '',
             f'`PYTHONPATH=. .venv/bin/python benchmarks/fault_suite.py --seed {args.seed} '
             f'--seconds {args.seconds}` on {datetime.date.today()}, {seconds:.0f} s. '
             f'adapter_node at {RATE_HZ:g} Hz, states at {STATE_HZ} Hz (fake monotonic clock); '
             f'"above rate": cases with more than {RATE_HZ + 2:g} commands in a 1 s window.', '',
             f'joint_states streams: {len(STAMPS)} stamp patterns ({", ".join(STAMPS)}) x '
             f'{len(VALUES)} value faults ({", ".join(VALUES)}; a fifth of the messages '
             'faulty), each message one input: a faulty state is held and logged, not refused '
             'with an error, so "clear errors" stays 0 there; what counts is the commands. '
             'Rewards: 400 steps per pattern into an adapter adapting on its own thread.', '',
             '| section | ' + ' | '.join(c.replace('_', ' ') for c in cols) + ' |',
             '|---|' + '---:|' * len(cols)]
    total = Tally()
    for name, tally in rows:
        lines.append(f'| {name} | ' + ' | '.join(str(getattr(tally, c)) for c in cols) + ' |')
        for c in cols:
            setattr(total, c, getattr(total, c) + getattr(tally, c))
    lines.append('| **all** | ' + ' | '.join(f'**{getattr(total, c)}**' for c in cols) + ' |')
    notes = [n for _, t in rows for n in t.notes]
    lines += ['', 'Notes:' if notes else 'No notes: every bad input was refused or held.', '']
    lines += [f'- {n}' for n in notes[:50]]
    ray_rows = [r for _, t in rows for r in t.ray_rows]
    if ray_rows:
        lines += ['', '## Ray cluster', '', 'A 2-node cluster on this host (benchmarks/'
                  'fault_ray.py): exit code; seconds from the fault to the last save of '
                  'resume.safetensors and to the exit of `maml-robot train`; iterations done '
                  'before the fault -> at the exit; the iteration saved in resume.safetensors; '
                  'the iteration reached by `--resume` one further (local backend).', '',
                  '| case | exit | s to save | s to exit | iterations | saved | resumed to | '
                  'messages |', '|---|---:|---:|---:|---|---:|---:|---|'] + ray_rows
    return '\n'.join(lines) + '\n'


def main(argv=None):
    """Run every section and print (and optionally write) the report."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--seconds', type=float, default=3.0, help='fake seconds per stream')
    parser.add_argument('--out', default=None, help='write the markdown report here')
    parser.add_argument('--only', default=None, choices=SECTIONS,
                        help='run one section (ray: the Ray cluster, minutes)')
    parser.add_argument('--domain', type=arguments.domain_id, default=None,
                        help='ROS_DOMAIN_ID of the adapter nodes (default: one no test run or '
                        'other benchmark on this machine holds)')
    args = parser.parse_args(argv)
    domain = args.domain if args.domain is not None else domain_id()
    import torch
    torch.set_num_threads(1)
    from maml_robot import online
    from maml_robot.checkpoint import save_checkpoint
    from maml_robot.scenario import load_scenario
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / 'fresh.safetensors'
        save_checkpoint(checkpoint, online.fresh_checkpoint(load_scenario('reacher'), seed=0))
        for name, section in (
                ('checkpoints', lambda t: checkpoint_cases(t, folder)),
                ('robot descriptions', description_cases),
                ('overrides and flags', override_cases),
                ('params files', lambda t: params_file_cases(t, folder)),
                ('runtime parameters', lambda t: param_cases(t, checkpoint, domain)),
                ('joint_states streams', lambda t: stream_cases(t, checkpoint, domain,
                                                                args.seconds, rng)),
                ('rewards', lambda t: reward_cases(t, rng)),
                ('ray cluster', ray_cases)):
            if args.only is not None and not name.startswith(args.only):
                continue
            tally = Tally()
            section(tally)
            rows.append((name, tally))
            print(f'{name}: {tally.inputs} inputs', file=sys.stderr, flush=True)
    text = report(rows, args, time.monotonic() - started)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
