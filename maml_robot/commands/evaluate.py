"""``maml-robot eval``: adaptation curves of meta-policy checkpoints, statistics, table, plot."""

import argparse
from datetime import datetime, timezone
import os
from pathlib import Path
import sys

from maml_robot import __version__
from maml_robot.baseline_store import EnvSource
from maml_robot.checkpoint import load_checkpoint
from maml_robot.commands.arguments import positive_int
from maml_robot.evaluate import (check_compatible, evaluate_checkpoints, summarize,
                                 SummaryConfig)
from maml_robot.operator_eval import evaluate_operator, OperatorEvalConfig, parse_settings
from maml_robot.results import (markdown_table, MethodResult, read_json, Report,
                                summary_csv_path, write_json, write_raw_csv, write_summary_csv)
from maml_robot.scenario import checkpoint_reference
import numpy as np
import torch
from tqdm import tqdm


def default_workers():
    """Return the default number of sampler workers: the CPU cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def add_common_arguments(parser):
    """Add the options that ``eval`` and ``baseline`` share (same tasks, same budgets)."""
    parser.add_argument('--split', default='test', choices=('test', 'ood'),
                        help='fixed task split to evaluate on (default: test)')
    parser.add_argument('--tasks', type=int, default=None, metavar='N',
                        help='evaluate the first N tasks of the split (default: all)')
    parser.add_argument('--task-filter', choices=('dead-joint', 'no-dead-joint'), default=None,
                        help='evaluate only the tasks of the split in this subset (their '
                             'indices in the split are kept); --tasks applies after it')
    parser.add_argument('--adapt-steps', type=int, default=3, metavar='K',
                        help='inner-loop steps per task; returns after 0..K (default: 3)')
    parser.add_argument('--rollouts', type=int, default=20, metavar='R',
                        help='rollouts per task and step, for adapting and measuring '
                             '(default: 20)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0], metavar='S',
                        help='evaluation seeds (default: 0); same seed = same initial states '
                             'for every method')
    parser.add_argument('--workers', type=int, default=default_workers(),
                        help='sampler worker processes (default: CPU cores, at most 8)')
    parser.add_argument('--max-envs', type=int, default=64,
                        help='environments the sampler keeps alive (about 30 MB each); tasks '
                             'are rolled out in waves of max-envs // R (default: 64)')
    parser.add_argument('--torch-threads', type=positive_int, default=1,
                        help='torch threads of the main process (default: 1; the networks are '
                             'tiny and more threads only contend with the env workers)')
    parser.add_argument('--device', default='auto',
                        help='device of the batched policy call: auto, cpu or cuda '
                             '(default: auto)')


def checkpoint_arg(text):
    """Argparse type: a checkpoint path, or a shipped model name (maml_robot/models/NAME)."""
    # lazy: the online adapter package (0.03 s) only to resolve a shipped model name
    from maml_robot.online.loading import resolve_checkpoint
    try:
        return resolve_checkpoint(text)
    except ValueError as err:   # argparse would print only "invalid checkpoint_arg value"
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser):
    """Add the ``eval`` options."""
    parser.add_argument('--checkpoint', type=checkpoint_arg, nargs='+', required=True,
                        metavar='PATH',
                        help='checkpoint(s), one per meta-training seed; a shipped model name '
                             '(reacher, cheetah) means maml_robot/models/NAME.safetensors')
    parser.add_argument('--scenario', default=None,
                        help="scenario name or YAML (default: the checkpoint's)")
    add_common_arguments(parser)
    parser.add_argument('--adaptation', default=None, choices=('pg', 'hill_climb', 'es'),
                        help='adaptation operator (default: the one the checkpoint was trained '
                             'for, its metadata "adaptation"; pg when absent: the meta-learned '
                             'inner step, K x R as above); hill_climb and es are '
                             'derivative-free (maml_robot/meta/operators.py) and run within '
                             '--budget')
    parser.add_argument('--adaptation-args', nargs='*', default=[], metavar='KEY=VALUE',
                        help='settings of a derivative-free operator, e.g. sigma=0.05 batch=4 '
                             'episodes=2 space=all max_delta=0.1 (default: those the '
                             'checkpoint was trained with, for its own operator)')
    parser.add_argument('--budget', type=int, default=None, metavar='EPISODES',
                        help='live episodes per task for --adaptation hill_climb/es (default: '
                             'K x R); their points are measured on R fresh episodes each')
    parser.add_argument('--baselines', type=Path, nargs='*', default=[], metavar='PATH',
                        help='result JSON files or folders of them from `maml-robot baseline`, '
                             'shown on the same table and figure')
    parser.add_argument('--json', type=Path, help='write every number and the summary as JSON')
    parser.add_argument('--csv', type=Path,
                        help='write one row per (method, run, task, step); the summary goes to '
                             'the same name with .summary.csv')
    parser.add_argument('--md', type=Path, help='write the markdown tables')
    parser.add_argument('--plot', type=Path, help='write the adaptation-curve figure (PNG)')
    parser.add_argument('--bootstrap', type=int, default=2000,
                        help='bootstrap resamples per interval (default: 2000)')
    parser.add_argument('--noise-z', type=float, default=2.0,
                        help='negative adaptation = a drop of more than this many standard '
                             'errors (default: 2)')


def load_baseline_results(paths):
    """Return the MethodResults in ``paths`` (files, or folders whose *.json are results)."""
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob('*.json')))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f'--baselines {path}: no such file or folder')
    results = [read_json(f) for f in files]
    for f, r in zip(files, results):
        if not isinstance(r, MethodResult):
            raise ValueError(f'{f} is a full report, not a baseline result; pass the files '
                             'that `maml-robot baseline --out` wrote')
    order = ('ppo-dr', 'multitask', 'oracle', 'random')  # the table's row order
    return sorted(results, key=lambda r: (order.index(r.method) if r.method in order
                                          else len(order), r.label))


def write_outputs(report, args):
    """Write the files asked for by ``--json/--csv/--md/--plot``."""
    if args.json:
        write_json(args.json, report)
    if args.csv:
        write_raw_csv(args.csv, report.results)
        write_summary_csv(summary_csv_path(args.csv), report.summary)
    table = markdown_table(report)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(table)
    if args.plot:
        from maml_robot.plots import plot_curves   # lazy: matplotlib takes 0.5 s to import
        plot_curves(report, args.plot)
    return table


def resolve_adaptation(args, ckpt):
    """
    Set ``args.adaptation`` and ``args.adaptation_args`` from the checkpoint where not given.

    The operator defaults to the one ``ckpt`` was trained for; for that operator the trained
    settings come first and ``--adaptation-args`` override them.
    """
    trained = ckpt.adaptation_operator()
    if args.adaptation is None:
        args.adaptation = trained
    if args.adaptation == trained:
        given = {item.partition('=')[0].strip() for item in args.adaptation_args}
        saved = ckpt.adaptation.get('settings', {})
        args.adaptation_args = [f'{k}={v}' for k, v in saved.items() if k not in given] + \
            list(args.adaptation_args)


def _evaluate_operator(args, source, tasks, task_ids, sampler, bar):
    """Evaluate with ``--adaptation`` (mean-action measurement for derivative-free ones)."""
    budget = args.adapt_steps * args.rollouts if args.budget is None else args.budget
    measure = ('stochastic',) if args.adaptation == 'pg' else ('mean',)
    cfg = OperatorEvalConfig(budget, args.rollouts, measure)
    return evaluate_operator(args.checkpoint, source, tasks, task_ids, sampler,
                             adaptation=args.adaptation,
                             settings=parse_settings(args.adaptation_args), cfg=cfg,
                             eval_seeds=args.seeds, split=args.split, progress=bar)


def run(args):
    """Evaluate the checkpoints (and gather baselines); print the markdown table."""
    torch.set_num_threads(args.torch_threads)
    first = load_checkpoint(args.checkpoint[0])
    resolve_adaptation(args, first)
    scenario = checkpoint_reference(first.scenario_name, first.scenario, args.scenario)
    for path in args.checkpoint[1:]:     # each must have been trained with that control
        other = load_checkpoint(path)
        checkpoint_reference(other.scenario_name, other.scenario, scenario)
    baseline_results = load_baseline_results(args.baselines)
    source = EnvSource.from_scenario(scenario)
    for r in baseline_results:
        stale = r.config.get('fingerprint') not in (None, source.fingerprint)
        if stale or r.scenario != source.name:
            raise ValueError(f'baseline {r.method} was computed for another version of scenario '
                             f'{r.scenario!r}; re-run `maml-robot baseline`')
    tasks, task_ids = source.split_tasks(args.split, args.tasks, args.task_filter)
    with source.sampler(args.workers, device=args.device, max_envs=args.max_envs) as sampler, \
            tqdm(desc=f'eval {source.name}/{args.split}', unit='step') as bar:
        if args.adaptation == 'pg' and not args.adaptation_args and args.budget is None:
            bar.total = len(args.checkpoint) * len(args.seeds) * (args.adapt_steps + 1)
            maml = evaluate_checkpoints(args.checkpoint, source, tasks, task_ids, sampler,
                                        adapt_steps=args.adapt_steps, rollouts=args.rollouts,
                                        eval_seeds=args.seeds, split=args.split, progress=bar)
        else:
            maml = _evaluate_operator(args, source, tasks, task_ids, sampler, bar)
    results = [maml] + baseline_results
    check_compatible(results)
    cfg = SummaryConfig(n_boot=args.bootstrap, noise_z=args.noise_z)
    meta = {'scenario': source.name, 'fingerprint': source.fingerprint, 'split': args.split,
            'tasks': len(tasks), 'task_filter': args.task_filter,
            'adapt_steps': args.adapt_steps, 'rollouts': args.rollouts,
            'adaptation': args.adaptation, 'adaptation_args': args.adaptation_args,
            'budget': args.budget,
            'eval_seeds': args.seeds, 'max_envs': args.max_envs, 'bootstrap': cfg.n_boot,
            'confidence': cfg.confidence, 'noise_z': cfg.noise_z, 'command': ' '.join(sys.argv),
            'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'maml_robot': __version__, 'numpy': np.__version__}
    report = Report(results, summarize(results, cfg), meta)
    print(write_outputs(report, args))
    return 0
