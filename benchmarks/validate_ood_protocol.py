"""
Validation of test-time adaptation settings on dead-joint tasks that are NOT the ood split.

The ood split is a fixed list (scenario seed); this draws ``--tasks`` further tasks from the
same ood distribution with ``--task-seed`` (any seed but the split's), keeps those with a dead
joint, and runs the adaptation protocol (``maml_robot.evaluate.adapt_tasks``) with each setting
given as ``KxR`` (K updates of R rollouts each; K x R <= 50 episodes is the issue's budget),
optionally ``KxRxS``: S inner steps on each batch (the adapter's ``steps_per_batch``). Settings are
chosen here, then run once on the ood split. ``--factors`` runs the first setting on variants
of the same tasks (dead joint revived; training-split dynamics with the same dead joint; plain
training-split dynamics) to show which part of "out of distribution" costs the return;
``--by-group`` gives every setting per task group (low or high damping, a weak powered joint:
``task_groups``), to show on which tasks the adaptation stops short. Run:

    .venv/bin/python benchmarks/validate_ood_protocol.py --checkpoint CK [CK ...] \
        --settings 5x10 2x20 5x10x2 [--tasks 40] [--task-seed 7070] [--out FILE.md]
"""

import argparse
import datetime
import sys

import numpy as np


def parse_setting(text):
    """Return (K, R, S) from 'KxR' or 'KxRxS'."""
    try:
        parts = [int(p) for p in text.split('x')]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f'setting {text!r}: use KxR or KxRxS, each >= 1')
    return tuple(parts) if len(parts) == 3 else (*parts, 1)


def dead_joint_tasks(scenario, n, seed):
    """Return the dead-joint tasks among ``n`` drawn from the ood distribution with ``seed``."""
    from maml_robot.dynamics import sample_task
    spec = scenario.splits['ood']
    if seed == spec.seed:
        raise ValueError(f'--task-seed {seed} is the ood split itself; pick another seed')
    rng = np.random.default_rng(seed)
    tasks = [t for t in (sample_task(scenario, spec, rng) for _ in range(n)) if t.dead_joints]
    if not tasks:
        raise ValueError(f'none of the {n} tasks drawn with seed {seed} has a dead joint; draw '
                         "more (--tasks) or check that the scenario's ood split has dead joints")
    return tasks


def factor_variants(scenario, tasks, seed):
    """Return {name: tasks}: the tasks as drawn, revived, and training dynamics +- the joint."""
    import dataclasses

    from maml_robot.dynamics import sample_task
    rng = np.random.default_rng(seed)
    train = [sample_task(scenario, scenario.splits['train'], rng) for _ in tasks]
    return {
        'as drawn (ood, dead joint)': tasks,
        'ood, the dead joint revived': [dataclasses.replace(t, dead_joints=()) for t in tasks],
        'training dynamics + the same dead joint': [
            dataclasses.replace(t, dead_joints=d.dead_joints) for t, d in zip(train, tasks)],
        'training dynamics': train}


def task_groups(scenario, tasks):
    """
    Return {name: task indices}: the dead-joint tasks split by what the rest of the robot can do.

    Low damping lets a dead link swing (an oracle can whip it into place); a weak powered joint
    (strength < 1, one that is not dead) can hardly move the arm at all.
    """
    names = list(scenario.joint_names)

    def weak(task):
        return any(s < 1 for n, s in zip(names, task.motor_strength) if n not in task.dead_joints)
    groups = {'damping < 1, powered joints strength >= 1': [],
              'damping >= 1, powered joints strength >= 1': [],
              'a powered joint weaker than 1': []}
    for i, task in enumerate(tasks):
        key = ('a powered joint weaker than 1' if weak(task) else
               'damping < 1, powered joints strength >= 1' if task.damping_scale < 1 else
               'damping >= 1, powered joints strength >= 1')
        groups[key].append(i)
    return groups


def _curves(ckpt, tasks, sampler, setting, eval_seed):
    """Return the (tasks, K + 1) returns of one checkpoint under one setting."""
    from maml_robot.evaluate import adapt_tasks, AdaptConfig
    k, r, s = setting
    cfg = AdaptConfig(k, r, ckpt.inner_step_size(), ckpt.inner_config().advantage_kwargs(),
                      steps_per_batch=s)
    return adapt_tasks(ckpt.make_policy(), ckpt.params, tasks, sampler, cfg,
                       seed=eval_seed)['returns']


def main(argv=None):
    """Score every (checkpoint, setting); print and optionally write a markdown table."""
    import torch

    from maml_robot.baseline_store import EnvSource
    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.online import resolve_checkpoint
    from maml_robot.scenario import load_scenario

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--checkpoint', nargs='+', required=True,
                        help='checkpoint files or shipped model names')
    parser.add_argument('--settings', type=parse_setting, nargs='+', default=[(5, 10, 1)])
    parser.add_argument('--tasks', type=int, default=40, help='ood draws (dead-joint kept)')
    parser.add_argument('--task-seed', type=int, default=7070)
    parser.add_argument('--eval-seed', type=int, default=0)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--factors', action='store_true',
                        help='also run the first setting on variants of the tasks (see above)')
    parser.add_argument('--by-group', action='store_true',
                        help='also give each setting per task group (see task_groups)')
    parser.add_argument('--out', help='also write the table to this markdown file')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ckpts = [(path, load_checkpoint(resolve_checkpoint(path))) for path in args.checkpoint]
    first = ckpts[0][1]
    for path, ckpt in ckpts:
        if ckpt.scenario_name != first.scenario_name:
            raise ValueError(f'{path} was trained on {ckpt.scenario_name!r}, '
                             f'{args.checkpoint[0]} on {first.scenario_name!r}: compare '
                             'checkpoints of one scenario')
    scenario = load_scenario(first.scenario_name)
    tasks = dead_joint_tasks(scenario, args.tasks, args.task_seed)
    source = EnvSource.from_scenario(first.scenario_name)
    groups = task_groups(scenario, tasks) if args.by_group else {}
    rows = ['| setting (K x R x inner steps) | episodes | k=0 | best k | last k | mean over k>0 |',
            '|---|---|---|---|---|---|']
    group_rows = ['| setting | task group | tasks | curve (k = 0, 1, ...) |', '|---|---|---|---|']
    with source.sampler(args.workers, device='cpu') as sampler:
        for k, r, s in args.settings:
            curves = []
            for path, ckpt in ckpts:
                try:
                    curves.append(_curves(ckpt, tasks, sampler, (k, r, s), args.eval_seed))
                except ValueError as err:     # the updates diverged (non-finite rollouts)
                    rows.append(f'| {k} x {r} x {s} | {k * r} | diverged on {path}: {err} |')
                    print(rows[-1], flush=True)
                    break
            else:
                per_task = np.mean(curves, 0)      # (tasks, K + 1), mean over checkpoints
                curve = per_task.mean(0)
                for name, idx in groups.items():
                    if idx:
                        values = ', '.join(f'{v:.2f}' for v in per_task[idx].mean(0))
                        group_rows.append(f'| {k} x {r} x {s} | {name} | {len(idx)} | {values} |')
                        print(group_rows[-1], flush=True)
                rows.append(f'| {k} x {r} x {s} | {k * r} | {curve[0]:.3f} | '
                            f'{curve[1:].max():.3f} (k={int(curve[1:].argmax()) + 1}) | '
                            f'{curve[-1]:.3f} | {curve[1:].mean():.3f} |')
                print(rows[-1], '  curve', np.round(curve, 3).tolist(), flush=True)
        if args.factors:
            rows += ['', '| tasks (first setting) | ' + ' | '.join(
                f'k={i}' for i in range(args.settings[0][0] + 1)) + ' |',
                '|---|' + '---|' * (args.settings[0][0] + 1)]
            for name, variant in factor_variants(scenario, tasks, args.task_seed).items():
                curve = np.mean([_curves(ckpt, variant, sampler, args.settings[0],
                                         args.eval_seed).mean(0) for _, ckpt in ckpts], 0)
                rows.append(f'| {name} | ' + ' | '.join(f'{v:.3f}' for v in curve) + ' |')
                print(rows[-1], flush=True)
    meta = (f'{scenario.name}: {len(tasks)} dead-joint tasks among {args.tasks} drawn from the '
            f'ood distribution with seed {args.task_seed} (not the ood split), '
            f'{len(ckpts)} checkpoint(s), eval seed {args.eval_seed}; '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.')
    text = '\n'.join(rows + (['', *group_rows] if groups else []))
    print(meta)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('# Dead-joint adaptation settings, validation tasks\n\n' + meta + '\n\n'
                    + text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
