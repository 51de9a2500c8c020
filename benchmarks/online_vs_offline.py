"""
Online (over ROS 2) adaptation gain vs the offline ``maml-robot eval`` gain on the same tasks.

For each test task, ``maml-robot demo`` runs the sim node and the adapter node over real DDS:
``--rollouts`` episodes with the meta-policy, one update from them, then ``--rollouts`` episodes
with the adapted policy. The online gain is the mean return after the update minus the mean
return before. The offline gain of the same task comes from an eval JSON (return after one
step minus return at step 0, same rollouts per step). Ratio = sum of online gains / sum of
offline gains over the tasks.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--tasks', type=int, nargs='+', default=list(range(8)),
                        help='test-split task indices')
    parser.add_argument('--rollouts', type=int, default=20, help='episodes per stage')
    parser.add_argument('--offline', default='docs/results/shipped/test.json',
                        help='eval JSON of the same checkpoint (maml-robot eval --json)')
    parser.add_argument('--out', default=None, help='also write the markdown table here')
    parser.add_argument('--seed', type=int, default=0,
                        help="demo --seed: the sim's goals and start poses, the exploration")
    args = parser.parse_args()
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
    text = '\n'.join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
