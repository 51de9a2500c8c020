"""``maml-robot demo``: a meta-policy adapts online over ROS 2 to a held-out robot."""

import json
from pathlib import Path
import threading
import time

from maml_robot.checkpoint import save_checkpoint
from maml_robot.commands.arguments import domain_id
from maml_robot.dynamics import sample_tasks
from maml_robot.ros import domains, launcher
from maml_robot.scenario import load_scenario

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
                             'the shipped policy was meta-trained to adapt from); the sim '
                             'repeats its start poses and goals with this period, so each '
                             'stage is compared with the meta-policy pair by pair')
    parser.add_argument('--trigger', default='state', choices=('state', 'timer'),
                        help="the adapter's trigger: a command per joint_states message "
                             '(default) or per timer tick')
    parser.add_argument('--domain-id', type=domain_id, default=None,
                        help='ROS_DOMAIN_ID (default: one no test run, benchmark or other '
                        'demo on this machine holds)')
    parser.add_argument('--seed', type=int, default=0,
                        help="seed of the sim's start poses, goals and sensor noise and of the "
                             "adapter's exploration (default: 0)")


def pick_task(scenario):
    """Return (index, task): the test task with a reversed motor and the heaviest payload."""
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
    # lazy: the online adapter package (0.03 s) only when no shipped model exists
    from maml_robot.online import fresh_checkpoint
    path = out / 'untrained_reacher.safetensors'
    save_checkpoint(path, fresh_checkpoint(scenario, seed=0))
    print('=' * 78)
    print(f'NOTE: no shipped meta-policy at {MODEL}.')
    print('      Using a FRESHLY INITIALIZED (untrained) policy: this shows the online')
    print('      adaptation machinery over ROS 2, not the quality of a meta-trained policy.')
    print('=' * 78)
    return path


def call(client, request, deadline, procs):
    """Call a service (the executor spins on another thread); return its response."""
    while not client.wait_for_service(timeout_sec=0.2):
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f'service {client.srv_name} did not appear')
    future = client.call_async(request)
    while not future.done():
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f'service {client.srv_name} did not answer')
        time.sleep(0.05)
    return future.result()


def start_when_active(node, deadline, procs):
    """Unpause the sim once the adapter is active: its episode 1 is then the sim's episode 1."""
    # lazy: ROS 2 is optional for pip users; `maml-robot --help` must not load rclpy
    from lifecycle_msgs.srv import GetState
    from std_srvs.srv import SetBool
    state = node.create_client(GetState, '/adapter_node/get_state')
    while call(state, GetState.Request(), deadline, procs).current_state.label != 'active':
        time.sleep(0.1)
    # both nodes' endpoints seen in the graph: the sim's first states are not lost to discovery
    while node.count_subscribers('/joint_states') < 1 or node.count_publishers('/goal') < 1:
        procs.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError('the adapter did not subscribe to /joint_states')
        time.sleep(0.1)
    pause = node.create_client(SetBool, '/sim_node/pause')
    call(pause, SetBool.Request(data=False), deadline, procs)


def collect(domain, episodes, timeout, procs):
    """Start the sim, subscribe to the adapter's episode returns; return [(episode, return, n)]."""
    # lazy: ROS 2 is optional for pip users; `maml-robot --help` must not load rclpy
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from maml_robot.ros.conversions import EPISODE_RETURN_QOS
    from std_msgs.msg import Float64MultiArray
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node('maml_robot_demo', context=context)
    rows, done = [], threading.Event()

    def on_return(msg):
        episode, ret, adaptations, steps = msg.data[:4]
        if len(rows) >= episodes or any(r[0] == int(episode) for r in rows):
            return
        rows.append((int(episode), float(ret), int(adaptations), int(steps)))
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
        start_when_active(node, deadline, procs)
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


def paired_gains(rows, cycle, episode_steps):
    """
    Return {n: (mean gain, pairs)}: after n updates vs the meta-policy, on the same episodes.

    Episode k and k + cycle start from the same pose and goal with the same sensor noise (the
    sim's ``episode_cycle``), so each slot of the cycle is compared with itself: a slot's mean
    return after n updates minus its mean return under the meta-policy, averaged over the
    slots both stages ran. Only complete episodes count (all ``episode_steps`` steps acted on:
    one with lost steps has a return over fewer steps).
    """
    slots = {}                                  # adaptations -> slot -> [returns]
    for episode, ret, count, steps in rows:
        if steps == episode_steps:
            slots.setdefault(count, {}).setdefault((episode - 1) % cycle, []).append(ret)
    base = slots.get(0, {})
    gains = {}
    for count, by_slot in sorted(slots.items()):
        common = sorted(set(by_slot) & set(base))
        if count == 0 or not common:
            continue
        diffs = [sum(by_slot[s]) / len(by_slot[s]) - sum(base[s]) / len(base[s])
                 for s in common]
        gains[count] = (sum(diffs) / len(diffs), len(diffs))
    return gains


def plot(rows, path, title):
    """Write the plot of the return per episode (PNG, Agg backend)."""
    import matplotlib   # lazy: matplotlib (0.7 s with pyplot) only when a plot is drawn
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt   # lazy: after use('Agg'), and 0.7 s
    episodes = [r[0] for r in rows]
    returns = [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(episodes, returns, 'o-', color='tab:blue', alpha=0.5, ms=3,
            label='return per episode')
    stages = {}
    for episode, ret, count, _ in rows:
        stages.setdefault(count, []).append((episode, ret))
    for count, points in sorted(stages.items()):
        mean = sum(r for _, r in points) / len(points)
        label = 'meta-policy' if count == 0 else f'after {count} update(s)'
        ax.hlines(mean, points[0][0], points[-1][0], colors='black' if count == 0 else 'tab:red',
                  lw=2.5, label=f'{label}: mean {mean:.2f}')
    for (e0, _, a0, _), (e1, _, a1, _) in zip(rows, rows[1:]):
        if a1 > a0:
            ax.axvline((e0 + e1) / 2, color='tab:orange', alpha=0.3, lw=1)
    ax.set_xlabel('episode (orange: an adaptation step took effect)')
    ax.set_ylabel('return')
    ax.set_title(title.replace(' shoulder', '\nshoulder'), fontsize=8)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summarize(rows, args, episode_steps):
    """Return demo.json's numbers: every episode, means per stage, paired gains per stage."""
    before = [r[1] for r in rows if r[2] == 0]
    stages = {}
    for _, ret, count, _ in rows:
        stages.setdefault(count, []).append(ret)
    gains = paired_gains(rows, args.rollouts_per_step, episode_steps)
    return {
        'seed': args.seed, 'episode_cycle': args.rollouts_per_step,
        'episodes': [{'episode': e, 'return': r, 'adaptations': a, 'steps': n}
                     for e, r, a, n in rows],
        'meta_policy_mean_return': sum(before) / len(before) if before else None,
        'last_5_mean_return': sum(r[1] for r in rows[-5:]) / len(rows[-5:]),
        'mean_return_by_adaptations': {
            str(count): sum(rets) / len(rets) for count, rets in sorted(stages.items())},
        'paired_gain_by_adaptations': {
            str(count): {'mean_gain': gain, 'pairs': pairs}
            for count, (gain, pairs) in gains.items()}}


def report(rows, summary):
    """Print the mean return of each stage and its paired gain over the meta-policy."""
    after = [r for r in rows if r[2] > 0]
    print(f'{len(after)} of {len(rows)} episodes ran with adapted parameters')
    gains = summary['paired_gain_by_adaptations']
    for count, mean in summary['mean_return_by_adaptations'].items():
        label = 'meta-policy' if count == '0' else f'after {count} adaptation(s)'
        n = sum(r[2] == int(count) for r in rows)
        line = f'  {label:<24} mean return {mean:8.3f} over {n} episodes'
        if count in gains:
            line += (f"; paired with the meta-policy: {gains[count]['mean_gain']:+.3f} over "
                     f"{gains[count]['pairs']} same start/goal")
        print(line)


def run(args):
    """Run the demo; return 0 on success."""
    if args.episodes < 1:
        raise ValueError(f'--episodes must be >= 1, got {args.episodes}')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario('reacher')
    index, task = pick_task(scenario)
    if args.task_index is not None:
        index, task = args.task_index, sample_tasks(scenario, None, 'test')[args.task_index]
    ckpt = checkpoint_path(args, scenario, out)
    domain = args.domain_id if args.domain_id is not None else domains.domain_id()
    title = f'reacher, test task {index}:\n{task.describe(scenario)}'
    print(f'robot: {title.replace(chr(10), " ")}\ncheckpoint: {ckpt}\n'
          f'ROS_DOMAIN_ID {domain}; logs in {out / "logs"}')
    sim = launcher.node_command('sim_node', overrides={
        'task_split': 'test', 'task_index': index, 'real_time_factor': args.real_time_factor,
        'seed': args.seed, 'episode_cycle': args.rollouts_per_step, 'start_paused': True})
    persist = out / 'adapted.safetensors'     # the adapted policy, kept for inspection
    if persist.exists():
        persist.unlink()                        # each demo starts from the meta-policy
    adapter = launcher.node_command('adapter_node', overrides={
        'checkpoint': str(ckpt), 'use_sim_time': True, 'reward_source': 'topic', 'seed': args.seed,
        'trigger': args.trigger,
        'rollouts_per_step': args.rollouts_per_step,   # judged on as many (accept_window 0)
        'persist_path': str(persist), 'ramp_in_steps': 0, 'fade_in_steps': 5,
        'robot_description_timeout': launcher.DESCRIPTION_WAIT})
    episode_wall = scenario.episode_steps * scenario.control_period / args.real_time_factor
    timeout = 60 + 3 * args.episodes * episode_wall
    with launcher.NodeProcesses(domain, log_dir=out / 'logs') as procs:
        procs.start('sim_node', sim)
        procs.start('adapter_node', adapter)
        rows = collect(domain, args.episodes, timeout, procs)
    plot(rows, out / 'adaptation.png', title)
    summary = summarize(rows, args, scenario.episode_steps)
    summary.update(task_index=index, task=task.to_dict(), checkpoint=str(ckpt))
    (out / 'demo.json').write_text(json.dumps(summary, indent=1))
    report(rows, summary)
    print(f'plot: {out / "adaptation.png"}')
    return 0
