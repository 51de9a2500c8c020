"""
Adaptation operators (pg, hill_climb, es) at equal live episodes, on VALIDATION tasks only.

Tasks: ``--distribution ood-dead`` draws ``--tasks`` tasks from the ood distribution with
``--task-seed`` (not the split's seed) and keeps those with a dead joint (as
``validate_ood_protocol.py`` does); ``--distribution train`` draws them from the training
distribution. Each ``--ops`` item is ``NAME[:KEY=VALUE,...]`` (the operator's settings, see
``maml_robot/meta/operators.py``), run with ``maml_robot.operator_eval.operator_curve`` within
``--budget`` live episodes per task; every point is measured on ``--measure-rollouts`` fresh
episodes with the mean action and with the Gaussian policy. Run:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/validate_operators.py --checkpoint reacher \
        --ops pg:episodes=16 hill_climb:sigma=0.02,batch=4,episodes=2 --task-seed 7070
"""

import argparse
import datetime
import sys
import time

import numpy as np


def parse_op(text):
    """
    Return [(name, {key: text}, budget or None), ...] from 'NAME[:K=V,K=V][@EPISODES]'.

    Phases joined by '+' run in turn, each within its @EPISODES (e.g. 'pg@32+hill_climb@16').
    """
    from maml_robot.operator_eval import parse_settings
    phases = []
    for part in text.split('+'):
        part, _, budget = part.partition('@')
        name, _, rest = part.partition(':')
        try:
            phases.append((name, parse_settings([p for p in rest.split(',') if p]),
                           int(budget) if budget else None))
        except ValueError as err:
            raise argparse.ArgumentTypeError(f'{text!r}: {err}') from None
    if len(phases) > 1 and any(b is None for _, _, b in phases):
        raise argparse.ArgumentTypeError(f'{text!r}: give every phase its @EPISODES')
    return phases


def build(phases, policy, ckpt):
    """Return (operator or [(operator, budget), ...], label) for parsed phases."""
    from maml_robot.operator_eval import make_operator
    ops, labels = [], []
    for name, settings, budget in phases:
        ops.append((make_operator(name, policy, ckpt.inner_step_size(),
                                  ckpt.inner_config().advantage_kwargs(), settings), budget))
        labels.append(name + (': ' + ', '.join(f'{k}={v}' for k, v in settings.items())
                              if settings else '') + (f' @{budget}' if budget else ''))
    return (ops[0][0] if len(ops) == 1 else ops), ' + '.join(labels)


def draw_tasks(scenario, distribution, n, seed):
    """Return the validation tasks: ood dead-joint draws or training-distribution draws."""
    from maml_robot.dynamics import sample_task
    if distribution == 'ood-dead':
        sys.path.insert(0, __file__.rsplit('/', 1)[0])
        from validate_ood_protocol import dead_joint_tasks
        return dead_joint_tasks(scenario, n, seed)
    spec = scenario.splits['train']
    rng = np.random.default_rng(seed)
    return [sample_task(scenario, spec, rng) for _ in range(n)]


def negative_rate(returns, stds, rollouts, z=2.0):
    """Return the fraction of tasks whose last point is below k = 0 by > z standard errors."""
    se = np.sqrt((stds[:, 0] ** 2 + stds[:, -1] ** 2) / rollouts)
    return float(np.mean(returns[:, -1] < returns[:, 0] - z * se))


def row(label, out, rollouts, wall):
    """Return one markdown row: k=0 and last point in both measures, curve, negatives, wall."""
    mean = out['returns']['mean']
    stoch = out['returns'].get('stochastic', np.full_like(mean, np.nan))
    curve = ', '.join(f'{v:.2f}' for v in mean.mean(0))
    neg = negative_rate(mean, out['returns_std']['mean'], rollouts)
    return (f'| {label} | {int(out["episodes"][-1])} | {mean[:, 0].mean():.3f} | '
            f'**{mean[:, -1].mean():.3f}** | {stoch[:, 0].mean():.3f} | '
            f'{stoch[:, -1].mean():.3f} | {100 * neg:.0f} % | {curve} '
            f'(at {", ".join(str(int(e)) for e in out["episodes"])}) | {wall:.0f} |')


def main(argv=None):
    """Run every operator setting on the validation tasks; print and optionally write a table."""
    import torch

    from maml_robot.baseline_store import EnvSource
    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.online import resolve_checkpoint
    from maml_robot.operator_eval import operator_curve, OperatorEvalConfig
    from maml_robot.scenario import load_scenario

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--checkpoint', default='reacher', help='checkpoint file or model name')
    parser.add_argument('--ops', type=parse_op, nargs='+', required=True)
    parser.add_argument('--distribution', choices=('ood-dead', 'train'), default='ood-dead')
    parser.add_argument('--tasks', type=int, default=40, help='draws (ood: dead-joint kept)')
    parser.add_argument('--task-seed', type=int, default=7070)
    parser.add_argument('--eval-seed', type=int, default=0)
    parser.add_argument('--budget', type=int, default=48, help='live episodes per task')
    parser.add_argument('--measure-rollouts', type=int, default=16)
    parser.add_argument('--measure', nargs='+', choices=('mean', 'stochastic'),
                        default=['mean', 'stochastic'], help='measurements (mean is needed)')
    parser.add_argument('--unpaired', action='store_true',
                        help="candidates of a round do not share their episodes' goals")
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--out', help='append the table to this markdown file')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    scenario = load_scenario(ckpt.scenario_name)
    if args.distribution == 'train' and args.task_seed == scenario.splits['test'].seed:
        raise ValueError(f'--task-seed {args.task_seed} is the test split seed; pick another')
    tasks = draw_tasks(scenario, args.distribution, args.tasks, args.task_seed)
    policy = ckpt.make_policy()
    cfg = OperatorEvalConfig(args.budget, args.measure_rollouts, tuple(args.measure),
                             paired=not args.unpaired)
    rows = ['| operator: settings | episodes | k=0 mean action | last, mean action | '
            'k=0 Gaussian | last, Gaussian | worse (2 SE) | curve, mean action | wall s |',
            '|---|---|---|---|---|---|---|---|---|']
    source = EnvSource.from_scenario(ckpt.scenario_name)
    with source.sampler(args.workers, device='cpu') as sampler:
        for phases in args.ops:
            op, label = build(phases, policy, ckpt)
            start = time.perf_counter()
            try:
                out = operator_curve(op, policy, ckpt.params, tasks, sampler, cfg,
                                     seed=args.eval_seed)
            except ValueError as err:
                rows.append(f'| {label} | failed: {err} |')
            else:
                rows.append(row(label, out, args.measure_rollouts, time.perf_counter() - start))
            print(rows[-1], flush=True)
    meta = (f'{scenario.name}, {args.checkpoint}: {len(tasks)} tasks ({args.distribution}, '
            f'{args.tasks} draws, task seed {args.task_seed}), eval seed {args.eval_seed}, '
            f'budget {args.budget} live episodes, {args.measure_rollouts} measurement episodes, '
            f'{"unpaired" if args.unpaired else "paired"} candidates, {args.workers} worker(s); '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.')
    print(meta)
    if args.out:
        with open(args.out, 'a') as f:
            f.write('\n' + meta + '\n\n' + '\n'.join(rows) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
