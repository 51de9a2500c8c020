"""
Online (over ROS 2) adaptation gain vs the offline ``maml-robot eval`` gain on the same tasks.

For each test task, ``maml-robot demo`` runs the sim node and the adapter node over real DDS:
``--rollouts`` episodes with the meta-policy, one update from them, then ``--rollouts`` episodes
with the adapted policy. The online gain is the mean return after the update minus the mean
return before. The offline gain of the same task comes from an eval JSON (return after one
step minus return at step 0, same rollouts per step). Ratio = sum of online gains / sum of
offline gains over the tasks.

One eval seed is a noisy reference (the sum of gains over 8 tasks varies by about +-3 from seed
to seed), so ``--in-process-seeds N`` also runs the same adapter without ROS (an
``OnlineAdapter`` driving a ``World`` directly, synchronous updates, the same episodes per
stage) on the same tasks with N seeds: the spread the online figure should fall into.
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import time


def offline_gains(path, method='maml'):
    """Return {task_id: return(k=1) - return(k=0)} of ``method`` in an eval JSON (seed 0)."""
    data = json.loads(Path(path).read_text())
    for result in data['results']:
        if result['method'] == method:
            returns = result['returns'][0]  # (tasks, steps) of the first run
            return {t: r[1] - r[0] for t, r in zip(result['task_ids'], returns)}
    raise ValueError(f'{path}: no results of method {method!r}')


def online_gain(task, rollouts, out, seed=0):
    """Run the demo on test task ``task``; return (before, after) mean returns."""
    cmd = [sys.executable, '-m', 'maml_robot.cli', 'demo', '--task-index', str(task),
           '--episodes', str(2 * rollouts), '--rollouts-per-step', str(rollouts),
           '--out', str(out), '--seed', str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f'demo failed on task {task}:\n{proc.stdout}\n{proc.stderr}')
    stages = json.loads((Path(out) / 'demo.json').read_text())['mean_return_by_adaptations']
    if '0' not in stages or '1' not in stages:
        raise RuntimeError(f'task {task}: the demo did not run both stages: {stages}')
    return stages['0'], stages['1']


def in_process_gain(task, rollouts, seed, checkpoint='reacher'):
    """Run the adapter in process on test task ``task``; return (before, after) mean returns."""
    import numpy as np
    from maml_robot import online
    from maml_robot.dynamics import sample_tasks
    from maml_robot.scenario import load_scenario
    from maml_robot.sim.world import World
    scenario = load_scenario('reacher')
    dynamics = sample_tasks(scenario, None, 'test')[task]
    config = online.OnlineConfig(synchronous=True, ramp_in_steps=0, fade_in_steps=0,
                                 rollouts_per_step=rollouts)
    adapter = online.load_adapter(checkpoint, config, seed=seed, log=lambda m: None)
    world = World(scenario, task=dynamics)
    try:
        returns = online.run_in_process(adapter, world, 2 * rollouts,
                                        np.random.default_rng(seed))
    finally:
        world.close()
    stages = {}
    for ret, count in returns:
        stages.setdefault(min(count, 1), []).append(ret)
    return float(np.mean(stages[0])), float(np.mean(stages[1]))


def in_process_table(tasks, rollouts, seeds):
    """Return markdown lines: per in-process seed, the mean before/after and the gain sum."""
    import numpy as np
    lines = ['| in-process seed | before | after 1 update | sum of gains |', '|---|---|---|---|']
    sums, afters = [], []
    for seed in range(seeds):
        pairs = [in_process_gain(task, rollouts, seed) for task in tasks]
        before, after = np.mean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])
        sums.append(sum(p[1] - p[0] for p in pairs))
        afters.append(after)
        lines.append(f'| {seed} | {before:.2f} | {after:.2f} | {sums[-1]:+.2f} |')
        print(lines[-1], flush=True)
    spread = (f' (sd {np.std(sums, ddof=1):.2f}, range {min(sums):+.2f} to {max(sums):+.2f})'
              if seeds > 1 else '')
    lines += ['', f'In process over {seeds} seed(s): sum of gains {np.mean(sums):+.2f}{spread}; '
              f'after one update {np.mean(afters):.2f}.']
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--tasks', type=int, nargs='+', default=list(range(8)),
                        help='test-split task indices')
    parser.add_argument('--rollouts', type=int, default=20, help='episodes per stage')
    parser.add_argument('--offline', default='docs/results/lr03_five_seeds/test.json',
                        help='eval JSON of the same checkpoint (maml-robot eval --json; its '
                        'first run: seed 10 of that file is the shipped reacher)')
    parser.add_argument('--out', default=None, help='also write the markdown table here')
    parser.add_argument('--seed', type=int, default=0,
                        help="demo --seed: the sim's goals and start poses, the exploration")
    parser.add_argument('--in-process-seeds', type=int, default=0,
                        help='also run the adapter without ROS with this many seeds')
    parser.add_argument('--skip-ros', action='store_true',
                        help='only the in-process runs (with --in-process-seeds)')
    args = parser.parse_args()
    if args.skip_ros and args.in_process_seeds < 1:
        parser.error('--skip-ros runs only the in-process seeds: give --in-process-seeds N >= 1')
    if args.skip_ros:
        text = '\n'.join(in_process_table(args.tasks, args.rollouts, args.in_process_seeds))
        print(text)
        if args.out:
            Path(args.out).write_text(text + '\n')
        return 0
    offline = offline_gains(args.offline)
    rows, sum_on, sum_off = [], 0.0, 0.0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            before, after = online_gain(task, args.rollouts, Path(tmp) / f'task{task}',
                                        args.seed)
            on, off = after - before, offline[task]
            sum_on, sum_off = sum_on + on, sum_off + off
            rows.append(f'| {task} | {before:.2f} | {after:.2f} | {on:+.2f} | {off:+.2f} |')
            print(rows[-1], flush=True)
    lines = [
        '| test task | online before | online after 1 update | online gain | offline gain |',
        '|---|---|---|---|---|', *rows, '',
        f'Sum of online gains {sum_on:+.2f}, of offline gains {sum_off:+.2f}: online / offline '
        f'= {sum_on / sum_off:.0%} over {len(rows)} tasks ({args.rollouts} episodes per stage; '
        f'{time.monotonic() - start:.0f} s).']
    if args.in_process_seeds:
        lines += ['', *in_process_table(args.tasks, args.rollouts, args.in_process_seeds)]
    text = '\n'.join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
