"""
Adaptation curves of a meta-policy on a split's tasks, and the summary statistics of results.

Protocol (docs/EVALUATION.md): for every task, starting from the checkpoint's parameters
``theta_0``, repeat for ``k = 0..K``: sample ``R`` fresh rollouts with ``theta_k``; their mean
return is the return at step ``k``; if ``k < K`` the same rollouts feed one
:func:`maml_robot.meta.inner.inner_step` (the update meta-training optimized, with the
checkpoint's inner learning rate) to give ``theta_{k+1}``. So every reported return is measured
on rollouts that the evaluated parameters have never seen, and the env-step cost of reaching
``theta_k`` is ``k * R`` episodes.
"""

from dataclasses import dataclass, field, replace
import time
from typing import Optional
import warnings

from maml_robot import stats
from maml_robot.checkpoint import load_checkpoint
from maml_robot.meta.inner import inner_step
from maml_robot.policy import expand_params, stack_params, unstack_params
from maml_robot.results import MethodResult
import numpy as np
import torch

REFERENCE_METHODS = ('random', 'oracle')
"""Methods that give the ends of the normalized score: 0 = random, 1 = oracle."""


# ---------------------------------------------------------------------------------------------
# Summary statistics of a set of results
# ---------------------------------------------------------------------------------------------

def seed_units(result, values):
    """
    Average ``values (S, M, ...)`` over the runs of each training seed.

    The bootstrap unit on the seed axis is the training seed (``result.groups``): evaluation
    seeds of one checkpoint are replicates, not independent training runs. With a single
    group the runs themselves are the units (then the CI reflects evaluation noise and task
    sampling only, which the report says).
    """
    groups = list(dict.fromkeys(result.groups))
    if len(groups) == 1:
        return values
    return np.stack([values[[i for i, g in enumerate(result.groups) if g == group]].mean(0)
                     for group in groups])


def reference_returns(results):
    """Return ``{method: {task_id: mean return}}`` for the random and oracle results present."""
    refs = {}
    for r in results:
        if r.method in REFERENCE_METHODS:
            means = r.returns[:, :, 0].mean(axis=0)                   # (M,)
            refs[r.method] = dict(zip(r.task_ids, means.tolist()))
    return refs


@dataclass(frozen=True)
class SummaryConfig:
    """How the summary statistics are computed."""

    n_boot: int = stats.DEFAULT_BOOTSTRAP
    """Two-way bootstrap draws (seeds x tasks) per interval."""
    confidence: float = stats.DEFAULT_CONFIDENCE
    """Two-sided level of every interval."""
    noise_z: float = stats.DEFAULT_NOISE_Z
    """A task adapted negatively if its return fell by more than noise_z standard errors."""
    seed: int = 0
    """Seed of the bootstrap generator (the summary is reproducible)."""


def _score_interval(result, units, refs, cfg, rng):
    nan = np.full(len(result.steps), np.nan)
    if not all(m in refs for m in REFERENCE_METHODS):
        return stats.Interval(nan, nan, nan), 0
    common = [j for j, t in enumerate(result.task_ids)
              if t in refs['random'] and t in refs['oracle']]
    if not common:
        return stats.Interval(nan, nan, nan), 0
    tasks = [result.task_ids[j] for j in common]
    rand = np.array([refs['random'][t] for t in tasks])
    oracle = np.array([refs['oracle'][t] for t in tasks])
    interval = stats.bootstrap_normalized(units[:, common], rand, oracle, rng=rng,
                                          n_boot=cfg.n_boot, confidence=cfg.confidence)
    return interval, len(common)


def _negative_rates(result, cfg, rng):
    """Negative-adaptation rate at each step vs step 0, with its CI, shape (K + 1,)."""
    n = len(result.steps)
    if result.is_reference:
        nan = np.full(n, np.nan)
        return stats.Interval(nan, nan, nan)
    before = np.repeat(result.returns[:, :, :1], n, axis=2)           # (S, M, K+1)
    margin = stats.noise_margin(result.returns_std[:, :, :1], result.returns_std,
                                result.rollouts, result.rollouts, z=cfg.noise_z)
    worse = stats.negative_adaptation(before, result.returns, margin)  # (S, M, K+1)
    units = seed_units(result, worse.astype(np.float64))
    return stats.bootstrap_ci(units, rng=rng, n_boot=cfg.n_boot, confidence=cfg.confidence)


def summarize(results, cfg=SummaryConfig()):
    """
    Return one summary row (dict) per method and adaptation step.

    Row keys: ``method, label, step, env_steps, wall_s, n_seeds, n_tasks, return_mean,
    return_low, return_high, score_mean, score_low, score_high, score_tasks, neg_rate_mean,
    neg_rate_low, neg_rate_high``. The normalized score needs a ``random`` and an ``oracle``
    result and is computed on the tasks that all three share (``score_tasks``); NaN otherwise.
    """
    refs = reference_returns(results)
    rows = []
    for index, result in enumerate(results):
        rng = np.random.default_rng([cfg.seed, index])
        units = seed_units(result, result.returns)                    # (U, M, K+1)
        ret = stats.bootstrap_ci(units, rng=rng, n_boot=cfg.n_boot, confidence=cfg.confidence)
        score, score_tasks = _score_interval(result, units, refs, cfg, rng)
        neg = _negative_rates(result, cfg, rng)
        env = result.env_steps.mean(axis=(0, 1))
        wall = result.wall_s.mean(axis=0)
        for k, step in enumerate(result.steps):
            rows.append({
                'method': result.method, 'label': result.label, 'step': int(step),
                'env_steps': float(env[k]), 'wall_s': float(wall[k]),
                'n_seeds': int(units.shape[0]), 'n_tasks': len(result.task_ids),
                'return_mean': float(ret.mean[k]), 'return_low': float(ret.low[k]),
                'return_high': float(ret.high[k]),
                'score_mean': float(score.mean[k]), 'score_low': float(score.low[k]),
                'score_high': float(score.high[k]), 'score_tasks': score_tasks,
                'neg_rate_mean': float(neg.mean[k]), 'neg_rate_low': float(neg.low[k]),
                'neg_rate_high': float(neg.high[k]),
            })
    return rows


def check_compatible(results):
    """Raise if results cannot share a table: different scenario, split or budgets."""
    if not results:
        raise ValueError('no results to compare')
    first = results[0]
    for r in results[1:]:
        if (r.scenario, r.split) != (first.scenario, first.split):
            raise ValueError(f'{r.method} was evaluated on {r.scenario}/{r.split} but '
                             f'{first.method} on {first.scenario}/{first.split}; evaluate both '
                             'on the same scenario and split')
        if r.is_reference or first.is_reference:
            continue
        if r.task_ids != first.task_ids:
            raise ValueError(f'{r.method} was evaluated on tasks {r.task_ids} but {first.method} '
                             f'on {first.task_ids}; give every method the same --split, --tasks '
                             'and --task-filter')
        if r.config.get('rollouts_per_step') != first.config.get('rollouts_per_step'):
            raise ValueError(
                f"{r.method} adapted with {r.config.get('rollouts_per_step')} rollouts per step "
                f"but {first.method} with {first.config.get('rollouts_per_step')}; "
                'give every method the same --rollouts')
    labels = [r.label for r in results]
    if len(set(labels)) != len(labels):
        raise ValueError(f'two results share a label: {labels}; rename one')


# ---------------------------------------------------------------------------------------------
# Adaptation loop
# ---------------------------------------------------------------------------------------------

def episode_returns(episodes):
    """Return the undiscounted return of each rollout, shape ``(..., N)`` (numpy float64)."""
    return episodes.returns(torch.float64, 'cpu').detach().numpy()


def _mean_std(returns):
    std = returns.std(axis=-1, ddof=1) if returns.shape[-1] > 1 else np.zeros(returns.shape[:-1])
    return returns.mean(axis=-1), std


@dataclass(frozen=True)
class AdaptConfig:
    """Budget and update of the adaptation loop."""

    adapt_steps: int = 3
    """K: inner-loop updates per task; returns are measured after 0..K of them."""
    rollouts: int = 20
    """R: rollouts per task sampled with the current parameters at each step."""
    lr: object = 0.1
    """Inner learning rate: a float or a dict of per-parameter tensors (from the checkpoint)."""
    inner_kwargs: dict = field(default_factory=dict)
    """Advantage settings of the inner step (``InnerConfig.advantage_kwargs()``)."""
    steps_per_batch: int = 1
    """inner_step calls per update, all on the same rollouts (the adapter's
    ``steps_per_batch``; unlike training's ``inner_steps``, each on fresh rollouts)."""
    inner_steps: Optional[int] = None
    """Deprecated name of ``steps_per_batch`` (taken as it, with a FutureWarning)."""

    def __post_init__(self):
        """Reject budgets that cannot give a curve."""
        if self.adapt_steps < 0:
            raise ValueError(f'--adapt-steps must be >= 0; got {self.adapt_steps}')
        if self.rollouts < 1:
            raise ValueError(f'--rollouts must be >= 1; got {self.rollouts}')
        if self.inner_steps is not None:
            if int(self.inner_steps) != self.inner_steps or self.inner_steps < 1:
                raise ValueError(f'inner_steps must be an integer >= 1; got {self.inner_steps} '
                                 '(and it was renamed steps_per_batch)')
            if self.steps_per_batch not in (1, self.inner_steps):
                raise ValueError(f'inner_steps={self.inner_steps} and steps_per_batch='
                                 f'{self.steps_per_batch} disagree: inner_steps is the old name '
                                 'of steps_per_batch; keep only steps_per_batch')
            warnings.warn('AdaptConfig(inner_steps=...) was renamed steps_per_batch (inner_step '
                          'calls on the same rollouts); pass steps_per_batch', FutureWarning,
                          stacklevel=3)
            object.__setattr__(self, 'steps_per_batch', int(self.inner_steps))
        if int(self.steps_per_batch) != self.steps_per_batch or self.steps_per_batch < 1:
            raise ValueError(f'steps_per_batch must be an integer >= 1; got '
                             f'{self.steps_per_batch}')


def adapt_tasks(policy, params, tasks, sampler, cfg, *, seed=0, progress=None, keep_params=False):
    """
    Run the adaptation protocol on ``tasks`` for one set of starting parameters.

    Each update is :func:`maml_robot.meta.inner.inner_step` on one task's rollouts (``cfg.
    steps_per_batch`` times on the same rollouts), computed first-order (evaluation needs no
    meta-gradient; the step itself is the same).

    :param policy: a :class:`maml_robot.policy.GaussianPolicy`.
    :param params: the starting parameters (one task's dict, no batch dim).
    :param tasks: the tasks, length ``B``.
    :param sampler: a :class:`maml_robot.sampler.Sampler`.
    :param cfg: an :class:`AdaptConfig`.
    :param seed: evaluation seed: step ``k`` samples with ``SeedSequence([seed, k])``, so
        methods evaluated with the same seed (and the same sampler ``max_envs``) meet the same
        initial states: a paired comparison.
    :param progress: optional tqdm bar, advanced by one per step.
    :param keep_params: also return ``params``: the parameters after the last update (tensors
        with a leading ``B`` dim), e.g. to watch what the adapted policies do.
    :returns: dict of numpy arrays ``returns, returns_std, env_steps`` of shape ``(B, K + 1)``
        and ``wall_s`` of shape ``(K + 1,)`` (cumulative, all tasks).
    """
    n_tasks, n_steps = len(tasks), cfg.adapt_steps + 1
    out = {name: np.zeros((n_tasks, n_steps)) for name in ('returns', 'returns_std', 'env_steps')}
    out['wall_s'] = np.zeros(n_steps)
    params_b = expand_params({k: v.detach() for k, v in params.items()}, n_tasks)
    start = time.perf_counter()
    for k in range(n_steps):
        episodes = sampler.sample(policy, params_b, tasks, cfg.rollouts,
                                  seed=np.random.SeedSequence([seed, k]))  # (B, R, T, ...)
        out['returns'][:, k], out['returns_std'][:, k] = _mean_std(episode_returns(episodes))
        if k + 1 < n_steps:
            used = episodes.mask.detach().cpu().double().sum((-1, -2)).numpy()  # (B,)
            out['env_steps'][:, k + 1] = out['env_steps'][:, k] + used
            adapted = []
            for b, task_params in enumerate(unstack_params(params_b)):
                task_params = {n: p.to(episodes.rewards.device) for n, p in task_params.items()}
                for _ in range(cfg.steps_per_batch):
                    task_params = {n: p.detach() for n, p in inner_step(
                        policy, task_params, episodes.task(b), cfg.lr, first_order=True,
                        **cfg.inner_kwargs).items()}
                adapted.append(task_params)
            params_b = stack_params(adapted)
            if not all(bool(p.isfinite().all()) for p in params_b.values()):
                raise ValueError(f'adaptation step {k + 1} produced non-finite parameters; '
                                 'lower the inner learning rate')
        out['wall_s'][k] = time.perf_counter() - start
        if progress is not None:
            progress.update(1)
    if keep_params:
        out['params'] = params_b
    return out


def adaptation_result(starts, tasks, task_ids, sampler, cfg, *, eval_seeds, method, label,
                      scenario, split, config, progress=None):
    """
    Run :func:`adapt_tasks` for every starting point and evaluation seed; return the result.

    :param starts: ``[(group, policy, params, lr), ...]``: one entry per training seed
        (checkpoint); ``lr`` None uses ``cfg.lr``.
    :param eval_seeds: evaluation seeds; runs are ``group/seed`` for each pair.
    :returns: a :class:`~maml_robot.results.MethodResult`.
    """
    runs, groups, outs = [], [], []
    for group, policy, params, lr in starts:
        start_cfg = cfg if lr is None else replace(cfg, lr=lr)
        for seed in eval_seeds:
            outs.append(adapt_tasks(policy, params, tasks, sampler, start_cfg, seed=int(seed),
                                    progress=progress))
            runs.append(f'{group}/seed{seed}')
            groups.append(group)
    return MethodResult(
        method=method, label=label, scenario=scenario, split=split, task_ids=task_ids,
        runs=runs, groups=groups, steps=np.arange(cfg.adapt_steps + 1),
        env_steps=np.stack([o['env_steps'] for o in outs]),
        returns=np.stack([o['returns'] for o in outs]),
        returns_std=np.stack([o['returns_std'] for o in outs]), rollouts=cfg.rollouts,
        wall_s=np.stack([o['wall_s'] for o in outs]),
        config={**config, 'rollouts_per_step': cfg.rollouts, 'adapt_steps': cfg.adapt_steps,
                'eval_seeds': [int(s) for s in eval_seeds]})


# ---------------------------------------------------------------------------------------------
# Checkpoints -> result
# ---------------------------------------------------------------------------------------------

def _group_names(checkpoints, paths):
    seeds = [c.training.get('seed') for c in checkpoints]
    if None not in seeds and len(set(seeds)) == len(seeds):
        return [f'seed{s}' for s in seeds]
    return [f'ckpt{i}' for i in range(len(paths))]


def evaluate_checkpoints(paths, source, tasks, task_ids, sampler, *, adapt_steps, rollouts,
                         eval_seeds, split, progress=None, label='meta-policy (ours)'):
    """
    Evaluate one checkpoint per training seed with the adaptation protocol.

    Each checkpoint adapts with its own inner learning rate (``Checkpoint.inner_step_size()``)
    and inner-loop settings; the checkpoints must share a scenario and a policy shape.

    :param paths: checkpoint files.
    :param source: a :class:`maml_robot.baseline_store.EnvSource` (scenario name and fingerprint).
    :returns: a :class:`~maml_robot.results.MethodResult` with ``method='maml'``.
    """
    checkpoints = [load_checkpoint(p) for p in paths]
    first = checkpoints[0]
    for path, ckpt in zip(paths, checkpoints):
        if ckpt.scenario_name != source.name:
            raise ValueError(f'{path} was trained on scenario {ckpt.scenario_name!r}, not '
                             f'{source.name!r}; pass --scenario or a matching checkpoint')
        if ckpt.policy_config != first.policy_config or ckpt.inner != first.inner:
            raise ValueError(f'{path} has another policy shape or inner loop than {paths[0]}; '
                             'evaluate different configurations separately')
    starts = []
    for group, ckpt in zip(_group_names(checkpoints, paths), checkpoints):
        lr = ckpt.inner_step_size()
        if isinstance(lr, dict):
            lr = {k: v.to(sampler.device) for k, v in lr.items()}
        starts.append((group, ckpt.make_policy().to(sampler.device), ckpt.params, lr))
    cfg = AdaptConfig(adapt_steps, rollouts, starts[0][3],
                      first.inner_config().advantage_kwargs())
    return adaptation_result(
        starts, tasks, task_ids, sampler, cfg, eval_seeds=eval_seeds, method='maml',
        label=label, scenario=source.name, split=split, progress=progress,
        config={'checkpoints': [str(p) for p in paths], 'inner': first.inner,
                'meta_sgd': first.inner_lr is not None, 'algorithm': first.algorithm,
                'fingerprint': source.fingerprint})
