"""
Validation score of meta-policies on tasks from the TRAINING distribution (never the test split).

For choosing a recipe without looking at the held-out splits: ``--tasks`` tasks are drawn from
the scenario's ``train`` split with ``--task-seed`` (use a seed that training never uses), and
every checkpoint runs the evaluation protocol (``maml_robot.evaluate``: 0 and 1 adaptation
steps of ``--rollouts`` rollouts each, eval seed 0). Run:

    .venv/bin/python benchmarks/validate_recipe.py --checkpoint runs/a/latest.safetensors ...
        [--tasks 40] [--task-seed 4242] [--rollouts 20] [--out FILE.md]
"""

import argparse
import datetime

import numpy as np


def main(argv=None):
    """Score every checkpoint; print (and optionally write) a markdown table."""
    import torch

    from maml_robot.baseline_store import EnvSource
    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.evaluate import evaluate_checkpoints

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--checkpoint', nargs='+', required=True)
    parser.add_argument('--tasks', type=int, default=40)
    parser.add_argument('--task-seed', type=int, default=4242)
    parser.add_argument('--rollouts', type=int, default=20)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--out', help='also write the table to this markdown file')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scenario = load_checkpoint(args.checkpoint[0]).scenario_name
    source = EnvSource.from_scenario(scenario)
    env = source.make_env()
    try:
        tasks = list(env.unwrapped.sample_tasks(args.tasks, split='train', seed=args.task_seed))
    finally:
        env.close()
    rows = ['| checkpoint | before adapting | after one step | gain |', '|---|---|---|---|']
    with source.sampler(args.workers, device='cpu') as sampler:
        for path in args.checkpoint:
            result = evaluate_checkpoints([path], source, tasks, list(range(len(tasks))),
                                          sampler, adapt_steps=1, rollouts=args.rollouts,
                                          eval_seeds=[0], split='train')
            returns = np.asarray(result.returns)[0]          # (tasks, 2)
            before, after = returns[:, 0].mean(), returns[:, 1].mean()
            rows.append(f'| {path} | {before:.3f} | {after:.3f} | {after - before:+.3f} |')
            print(rows[-1], flush=True)
    text = '\n'.join(rows)
    meta = (f'{scenario}: {args.tasks} tasks of the train split drawn with seed {args.task_seed}, '
            f'{args.rollouts} rollouts per step, eval seed 0; '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.')
    print(meta)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('# Validation on the training distribution\n\n' + meta + '\n\n' + text
                    + '\n\nCommand: `.venv/bin/python benchmarks/validate_recipe.py --checkpoint '
                    + ' '.join(args.checkpoint) + f' --tasks {args.tasks} --task-seed '
                    f'{args.task_seed} --rollouts {args.rollouts} --out {args.out}`\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
