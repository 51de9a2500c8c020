"""
Normalized score of a recorded evaluation, per group of dead-joint tasks.

Reads the meta-policy's report (``maml-robot eval --json``) and the oracle and random results it
was scored against, groups the tasks as ``validate_ood_protocol.task_groups`` does (low or high
damping with strong powered joints, a weak powered joint), and prints mean returns and the
normalized score (R - R_random) / (R_oracle - R_random) of each group at every step. Nothing is
re-run: it reads the files. Run:

    .venv/bin/python benchmarks/score_by_group.py \
        --report docs/results/lr03_five_seeds/ood-dead-3x16.json \
        --baselines docs/results/reacher-ood-dead-3x16 [--out FILE.md]
"""

import argparse
import json
from pathlib import Path
import sys

import numpy as np


def method_returns(results, method):
    """Return ``(task_ids, returns (tasks, steps))`` of ``method``, averaged over its runs."""
    for result in results:
        if result['method'] == method:
            return result['task_ids'], np.asarray(result['returns'], float).mean(0)
    raise SystemExit(f'no {method!r} result in the files read; --report must be a '
                     '`maml-robot eval --json` report of a meta-policy')


def main(argv=None):
    """Print (and optionally write) the per-group table."""
    from maml_robot.baseline_store import EnvSource
    from maml_robot.scenario import load_scenario
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from validate_ood_protocol import task_groups      # the benchmark next door

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--report', type=Path, required=True, help='maml-robot eval --json file')
    parser.add_argument('--baselines', type=Path, required=True,
                        help='folder holding oracle.json and random.json')
    parser.add_argument('--out', help='also write the table to this markdown file')
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    if not isinstance(report, dict) or not {'results', 'meta'} <= set(report):
        raise SystemExit(f'{args.report} is not a `maml-robot eval --json` report (no results '
                         'and meta); pass the report, and its baselines folder as --baselines')
    results = list(report['results'])
    meta = report['meta']
    for kind in ('oracle', 'random'):
        path = args.baselines / f'{kind}.json'
        if not path.is_file():
            raise SystemExit(f'{path} not found; --baselines must be the folder holding the '
                             f'oracle.json and random.json the report was scored against')
        result = json.loads(path.read_text())
        where = (result.get('scenario'), result.get('split'))
        if where != (meta['scenario'], meta['split']):
            raise SystemExit(f'{path} is for scenario/split {where}, the report for '
                             f"{(meta['scenario'], meta['split'])}: pass the baselines of the "
                             'same split')
        results.append(result)
    task_ids, ours = method_returns(results, 'maml')
    refs = {}
    for kind in ('oracle', 'random'):
        ids, returns = method_returns(results, kind)
        by_id = dict(zip(ids, returns[:, 0]))
        missing = sorted(set(task_ids) - set(by_id))
        if missing:
            raise SystemExit(f'{kind} has no result for tasks {missing}')
        refs[kind] = np.array([by_id[t] for t in task_ids])
    scenario = load_scenario(meta['scenario'])
    split_tasks, _ = EnvSource.from_scenario(meta['scenario']).split_tasks(meta['split'])
    groups = task_groups(scenario, [split_tasks[t] for t in task_ids])
    groups['all'] = list(range(len(task_ids)))
    rows = ['| task group | tasks (split indices) | random | oracle | meta-policy by step | '
            'normalized by step |', '|---|---|---|---|---|---|']
    for name, idx in groups.items():
        if not idx:
            continue
        rnd, orc, curve = refs['random'][idx].mean(), refs['oracle'][idx].mean(), \
            ours[idx].mean(0)
        scores = ('n/a: the oracle is not above random here' if orc <= rnd else
                  ', '.join(f'{v:.3f}' for v in (curve - rnd) / (orc - rnd)))
        rows.append(f'| {name} | {len(idx)} ({", ".join(str(task_ids[i]) for i in idx)}) | '
                    f'{rnd:.2f} | {orc:.2f} | {", ".join(f"{v:.2f}" for v in curve)} | '
                    f'{scores} |')
    text = '\n'.join(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(f'# Score by task group: {args.report}\n\n{text}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
