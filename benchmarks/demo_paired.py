"""
Does a user see the gain in one ``maml-robot demo`` run? Paired gains over several demo seeds.

Runs the demo exactly as a new user gets it (default checkpoint, task, episodes, rollouts per
step, real-time factor; over real ROS 2 between two processes) once per seed, and reads each
run's ``demo.json``. The sim repeats its start poses, goals and sensor noise every
``rollouts_per_step`` episodes, so each stage after n updates is compared with the meta-policy
slot by slot (complete episodes only). A seed counts as a win when the mean paired gain of all
adapted episodes is above zero. Run:

    .venv/bin/python benchmarks/demo_paired.py --seeds 10 --out benchmarks/results/demo_paired.md
"""

import argparse
from datetime import datetime, timezone
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import time

from maml_robot.commands.demo import paired_gains


def run_demo(seed, folder, extra):
    """Run one demo; return (its demo.json as a dict, wall seconds)."""
    out = Path(folder) / f'seed{seed}'
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, '-m', 'maml_robot.cli', 'demo', '--seed', str(seed),
                           '--out', str(out)] + extra, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f'demo --seed {seed} failed ({proc.returncode}):\n'
                           f'{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}')
    return json.loads((out / 'demo.json').read_text()), wall


def pooled_gain(summary):
    """Return (mean paired gain of all adapted episodes, slots): per slot, adapted - meta."""
    full = max(e['steps'] for e in summary['episodes'])
    # every adapted stage pooled into one (adaptations 1), paired as the demo pairs its stages
    rows = [(e['episode'], e['return'], min(e['adaptations'], 1), e['steps'])
            for e in summary['episodes']]
    gain, slots = paired_gains(rows, summary['episode_cycle'], full).get(1, (float('nan'), 0))
    return gain, slots


def table(results):
    """Return the markdown rows: one per seed, gains per stage and pooled."""
    stages = sorted({int(k) for summary, _ in results
                     for k in summary['paired_gain_by_adaptations']})
    head = ('| seed | meta-policy mean | ' + ' | '.join(f'after {n}' for n in stages)
            + ' | pooled (slots) | complete episodes | wall s |')
    lines = [head, '|' + '---|' * (len(stages) + 5)]
    for summary, wall in results:
        gains = summary['paired_gain_by_adaptations']
        cells = [f"{gains[str(n)]['mean_gain']:+.2f} ({gains[str(n)]['pairs']})"
                 if str(n) in gains else '-' for n in stages]
        gain, slots = pooled_gain(summary)
        full = max(e['steps'] for e in summary['episodes'])
        complete = sum(e['steps'] == full for e in summary['episodes'])
        lines.append(f"| {summary['seed']} | {summary['meta_policy_mean_return']:.2f} | "
                     + ' | '.join(cells) + f' | {gain:+.2f} ({slots}) | '
                     f"{complete}/{len(summary['episodes'])} | {wall:.0f} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--seeds', type=int, default=10, help='demo seeds 0 .. N-1')
    parser.add_argument('--out', default=None, help='markdown file for the result')
    parser.add_argument('--demo-args', default='', help='extra demo arguments (default: none)')
    args = parser.parse_args()
    extra = args.demo_args.split()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            summary, wall = run_demo(seed, folder, extra)
            summary['seed'] = seed
            gain, slots = pooled_gain(summary)
            print(f'seed {seed}: pooled paired gain {gain:+.3f} over {slots} slots '
                  f'({wall:.0f} s)', flush=True)
            results.append((summary, wall))
    wins = sum(pooled_gain(s)[0] > 0 for s, _ in results)
    lines = table(results)
    text = '\n'.join([
        '# Paired demo gains (issue 17, Build 5)', '',
        f'`{" ".join(sys.argv)}` on {datetime.now(timezone.utc):%Y-%m-%d}, '
        f'{platform.node()} ({os.cpu_count()} cores), demo arguments: '
        f'{args.demo_args or "the defaults"}.', '',
        "Gain = return after n updates minus the meta-policy's return on the same start pose, "
        'goal and sensor noise (cycle slot), averaged over the slots both ran; (n) = slots. '
        'Pooled: all adapted episodes against the meta-policy, per slot. Complete episodes: '
        'every step acted on (others are left out of the pairing).', '',
        *lines, '',
        f'**The adapted policy beats the meta-policy (pooled paired gain > 0) in {wins} of '
        f'{len(results)} seeds.**', ''])
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
