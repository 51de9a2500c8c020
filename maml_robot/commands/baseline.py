"""``maml-robot baseline``: train (or load from the cache) and evaluate one SB3 baseline."""

import os
from pathlib import Path

from maml_robot import baselines, sb3_bridge
from maml_robot.checkpoint import load_checkpoint
from maml_robot.commands.evaluate import add_common_arguments, checkpoint_arg
from maml_robot.meta.inner import InnerConfig
from maml_robot.policy import PolicyConfig
from maml_robot.results import write_json
import torch
from tqdm import tqdm


def default_cache():
    """Return the default cache folder (``$MAML_ROBOT_CACHE`` or ~/.cache/maml_robot)."""
    root = os.environ.get('MAML_ROBOT_CACHE') or \
        Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'maml_robot'
    return Path(root) / 'baselines'


def add_arguments(parser):
    """Add the ``baseline`` options."""
    parser.add_argument('--scenario', required=True, help='scenario name or YAML path')
    parser.add_argument('--kind', required=True, choices=baselines.KINDS, help='which baseline')
    parser.add_argument('--out', type=Path, required=True,
                        help='folder for the result (<out>/<kind>.json)')
    add_common_arguments(parser)
    parser.add_argument('--train-steps', type=int, default=500_000,
                        help='PPO env steps: in total for ppo-dr/multitask, per task for the '
                             'oracle (default: 500000)')
    parser.add_argument('--train-seeds', type=int, nargs='+', default=[0],
                        help='training seeds of the baseline (default: 0)')
    parser.add_argument('--oracle-tasks', type=int, default=4,
                        help='train the oracle on the first N evaluated tasks (default: 4)')
    parser.add_argument('--n-envs', type=int, default=8,
                        help='parallel envs of SB3 PPO training (default: 8)')
    parser.add_argument('--checkpoint', type=checkpoint_arg, default=None,
                        help='meta-policy checkpoint (a path or a shipped model name): network '
                             'shape and inner loop to copy (needed by --kind multitask unless '
                             '--inner-lr is given)')
    parser.add_argument('--inner-lr', type=float, default=None,
                        help="multitask fine-tune step size (default: the checkpoint's)")
    parser.add_argument('--cache', type=Path, default=default_cache(),
                        help='model cache folder (default: $MAML_ROBOT_CACHE or '
                             '~/.cache/maml_robot/baselines)')
    parser.add_argument('--label', default=None,
                        help='legend text and file name stem (default: the kind), e.g. to '
                             'keep a second multitask run with another --inner-lr')
    parser.add_argument('--retrain', action='store_true',
                        help='train again even when the cache holds the model')


def _network_and_inner(args, source):
    """Return (PolicyConfig, inner lr, inner kwargs) from --checkpoint or the defaults."""
    obs_dim, low, _ = sb3_bridge.env_bounds(source.make_env)
    if args.checkpoint is None:
        if args.kind == 'multitask' and args.inner_lr is None:
            raise ValueError("--kind multitask fine-tunes with the meta-policy's inner loop: "
                             'pass --checkpoint (or --inner-lr)')
        inner = InnerConfig()
        return PolicyConfig(obs_dim, len(low)), args.inner_lr or inner.lr, \
            inner.advantage_kwargs()
    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.scenario_name != source.name:
        raise ValueError(f'{args.checkpoint} is for scenario {ckpt.scenario_name!r}, not '
                         f'{source.name!r}')
    lr = args.inner_lr
    if lr is None:
        lr = ckpt.inner_step_size()
        if isinstance(lr, dict):
            if args.kind != 'multitask':   # only the multitask fine-tune takes an inner lr
                lr = InnerConfig().lr
            else:
                raise ValueError(f'{args.checkpoint} learned its inner step sizes, which belong '
                                 "to the meta-policy's weights, not to other weights; pass "
                                 '--inner-lr for the multitask fine-tune')
    return ckpt.policy_config, float(lr), ckpt.inner_config().advantage_kwargs()


def run(args):
    """Train or load the baseline, evaluate it, write ``<out>/<kind>.json``."""
    torch.set_num_threads(args.torch_threads)
    source = baselines.EnvSource.from_scenario(args.scenario)
    policy_config, lr, inner_kwargs = _network_and_inner(args, source)
    ppo = sb3_bridge.PPOConfig(n_envs=args.n_envs)
    cfg = baselines.BaselineConfig(
        kind=args.kind, split=args.split, tasks=args.tasks, adapt_steps=args.adapt_steps,
        rollouts=args.rollouts, train_steps=args.train_steps, seeds=tuple(args.train_seeds),
        eval_seeds=tuple(args.seeds), oracle_tasks=args.oracle_tasks, workers=args.workers,
        device=args.device, ppo=ppo, inner_lr=lr, inner_kwargs=inner_kwargs,
        max_envs=args.max_envs, task_filter=args.task_filter)
    cache = baselines.BaselineCache(args.cache, source, policy_config, retrain=args.retrain)
    n_tasks = len(source.split_tasks(args.split, args.tasks, args.task_filter)[0])
    with tqdm(total=baselines.progress_total(cfg, n_tasks), desc=f'baseline {args.kind}') as bar:
        result = baselines.run_baseline(cfg, source, cache, progress=bar)
    result.config['cache'] = [str(p) for p in cache.trained] or 'all models loaded from cache'
    if args.label:
        result.label = args.label
    stem = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in args.label or args.kind)
    out = args.out / f'{stem}.json'
    write_json(out, result)
    means = result.returns.mean(axis=(0, 1))
    print(f'{result.label}: mean return by step {[round(float(m), 2) for m in means]} '
          f'over {len(result.runs)} runs x {len(result.task_ids)} tasks -> {out}')
    return 0
