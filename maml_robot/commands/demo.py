"""``maml-robot demo``: a meta-policy adapts online over ROS 2 to a held-out robot."""

import json
import os
from pathlib import Path
import threading
import time

from maml_robot.commands.arguments import domain_id

HELP = ('sim robot with unseen dynamics + online adapter over real ROS 2 topics; prints the '
        'return per episode and plots it')
MODEL = Path(__file__).resolve().parent.parent / 'models' / 'reacher.safetensors'


def add_arguments(parser):
    """Add the demo's options."""
    parser.add_argument('--out', default='demo_out', help='folder for the plot, data and logs')
    parser.add_argument('--episodes', type=int, default=80,
                        help='episodes to run (default: the meta-policy, then 3 adaptations)')
    parser.add_argument('--checkpoint', default=None,
                        help=f'meta-policy (default: the shipped {MODEL.name})')
    parser.add_argument('--task-index', type=int, default=None,
                        help='test-split task (default: a heavy payload and a reversed motor)')
    parser.add_argument('--real-time-factor', type=float, default=4.0,
                        help='sim speed (wall time per episode = 2 s / this)')
    parser.add_argument('--rollouts-per-step', type=int, default=20,
                        help='episodes per adaptation step (default: the 20 rollouts per task '
                             'the shipped policy was meta-trained to adapt from)')
    parser.add_argument('--trigger', default='state', choices=('state', 'timer'),
                        help="the adapter's trigger: a command per joint_states message "
                             '(default) or per timer tick')
    parser.add_argument('--domain-id', type=domain_id, default=None,
                        help='ROS_DOMAIN_ID (default: one derived from the process id)')
    parser.add_argument('--seed', type=int, default=0,
                        help="seed of the sim's start poses, goals and sensor noise and of the "
                             "adapter's exploration (default: 0)")


def pick_task(scenario):
    """Return (index, task): the test task with a reversed motor and the heaviest payload."""
    from maml_robot.dynamics import sample_tasks
    tasks = sample_tasks(scenario, None, 'test')
    reversed_ = [i for i, t in enumerate(tasks) if -1 in t.motor_direction]
    pool = reversed_ or range(len(tasks))
    index = max(pool, key=lambda i: tasks[i].payload)
    return index, tasks[index]


def checkpoint_path(args, scenario, out):
    """Return the checkpoint to use; announce loudly when falling back to an untrained one."""
    if args.checkpoint:
        return Path(args.checkpoint)
    if MODEL.is_file():
        return MODEL
    from maml_robot.checkpoint import save_checkpoint
    from maml_robot.online import fresh_checkpoint
    path = out / 'untrained_reacher.safetensors'
    save_checkpoint(path, fresh_checkpoint(scenario, seed=0))
    print('=' * 78)
    print(f'NOTE: no shipped meta-policy at {MODEL}.')
    print('      Using a FRESHLY INITIALIZED (untrained) policy: this shows the online')
    print('      adaptation machinery over ROS 2, not the quality of a meta-trained policy.')
    print('=' * 78)
    return path


def collect(domain, episodes, timeout, procs):
    """Subscribe to the adapter's episode returns; return [(episode, return, adaptations)]."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from maml_robot.ros.conversions import EPISODE_RETURN_QOS
    from std_msgs.msg import Float64MultiArray
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('maml_robot_demo', context=context)
    rows, done = [], threading.Event()

    def on_return(msg):
        episode, ret, adaptations = msg.data[:3]
        if len(rows) >= episodes or any(r[0] == int(episode) for r in rows):
            return
        rows.append((int(episode), float(ret), int(adaptations)))
        tag = 'meta-policy' if adaptations == 0 else f'after {int(adaptations)} adaptations'
        print(f'episode {int(episode):3d}  return {ret:8.3f}  ({tag})', flush=True)
        if len(rows) >= episodes:
            done.set()

    node.create_subscription(Float64MultiArray, '/adapter_node/episode_return', on_return,
                             EPISODE_RETURN_QOS)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done.wait(0.5):
            procs.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f'only {len(rows)} of {episodes} episodes in {timeout:.0f} s')
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        thread.join(2.0)
    return rows[:episodes]


def plot(rows, path, title):
    """Write the plot of the return per episode (PNG, Agg backend)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    episodes = [r[0] for r in rows]
    returns = [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(episodes, returns, 'o-', color='tab:blue', alpha=0.5, ms=3,
            label='return per episode')
    stages = {}
    for episode, ret, count in rows:
        stages.setdefault(count, []).append((episode, ret))
    for count, points in sorted(stages.items()):
        mean = sum(r for _, r in points) / len(points)
        label = 'meta-policy' if count == 0 else f'after {count} update(s)'
        ax.hlines(mean, points[0][0], points[-1][0], colors='black' if count == 0 else 'tab:red',
                  lw=2.5, label=f'{label}: mean {mean:.2f}')
    for (e0, _, a0), (e1, _, a1) in zip(rows, rows[1:]):
        if a1 > a0:
            ax.axvline((e0 + e1) / 2, color='tab:orange', alpha=0.3, lw=1)
    ax.set_xlabel('episode (orange: an adaptation step took effect)')
    ax.set_ylabel('return')
    ax.set_title(title.replace(' shoulder', '\nshoulder'), fontsize=8)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args):
    """Run the demo; return 0 on success."""
    from maml_robot.ros.launcher import node_command, NodeProcesses
    from maml_robot.scenario import load_scenario
    if args.episodes < 1:
        raise ValueError(f'--episodes must be >= 1, got {args.episodes}')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario('reacher')
    index, task = pick_task(scenario)
    if args.task_index is not None:
        from maml_robot.dynamics import sample_tasks
        index, task = args.task_index, sample_tasks(scenario, None, 'test')[args.task_index]
    ckpt = checkpoint_path(args, scenario, out)
    domain = args.domain_id if args.domain_id is not None else 150 + os.getpid() % 80
    title = f'reacher, test task {index}:\n{task.describe(scenario)}'
    print(f'robot: {title.replace(chr(10), " ")}\ncheckpoint: {ckpt}\n'
          f'ROS_DOMAIN_ID {domain}; logs in {out / "logs"}')
    sim = node_command('sim_node', overrides={
        'task_split': 'test', 'task_index': index, 'real_time_factor': args.real_time_factor,
        'seed': args.seed})
    persist = out / 'adapted.safetensors'     # the adapted policy, kept for inspection
    if persist.exists():
        persist.unlink()                        # each demo starts from the meta-policy
    adapter = node_command('adapter_node', overrides={
        'checkpoint': str(ckpt), 'use_sim_time': True, 'reward_source': 'topic', 'seed': args.seed,
        'trigger': args.trigger,
        'rollouts_per_step': args.rollouts_per_step,   # judged on as many (accept_window 0)
        'persist_path': str(persist), 'ramp_in_steps': 0, 'fade_in_steps': 5})
    episode_wall = scenario.episode_steps * scenario.control_period / args.real_time_factor
    timeout = 60 + 3 * args.episodes * episode_wall
    with NodeProcesses(domain, log_dir=out / 'logs') as procs:
        procs.start('sim_node', sim)
        procs.start('adapter_node', adapter)
        rows = collect(domain, args.episodes, timeout, procs)
    plot(rows, out / 'adaptation.png', title)
    before = [r[1] for r in rows if r[2] == 0]
    after = [r[1] for r in rows if r[2] > 0]
    summary = {'task_index': index, 'task': task.to_dict(), 'checkpoint': str(ckpt),
               'episodes': [{'episode': e, 'return': r, 'adaptations': a} for e, r, a in rows],
               'meta_policy_mean_return': sum(before) / len(before) if before else None,
               'last_5_mean_return': sum(r[1] for r in rows[-5:]) / len(rows[-5:])}
    stages = {}
    for _, ret, count in rows:
        stages.setdefault(count, []).append(ret)
    summary['mean_return_by_adaptations'] = {
        str(count): sum(rets) / len(rets) for count, rets in sorted(stages.items())}
    (out / 'demo.json').write_text(json.dumps(summary, indent=1))
    print(f'{len(after)} of {len(rows)} episodes ran with adapted parameters')
    for count, rets in sorted(stages.items()):
        label = 'meta-policy' if count == 0 else f'after {count} adaptation(s)'
        print(f'  {label:<24} mean return {sum(rets) / len(rets):8.3f} over {len(rets)} '
              'episodes')
    print(f'plot: {out / "adaptation.png"}')
    return 0
