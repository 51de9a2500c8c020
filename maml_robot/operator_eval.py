"""
Adaptation curves of any adaptation operator at equal live episodes (``--adaptation``).

Protocol: every task starts from the checkpoint's parameters ``theta_0``. Round ``r`` asks the
operator (:mod:`maml_robot.meta.operators`) for its candidates, rolls each out for
``op.episodes`` live episodes (the Gaussian policy for ``pg``, the mean action for the
derivative-free operators) and tells it the episodes; its answer is ``theta_{r+1}``. A round
costs ``len(candidates) * op.episodes`` live episodes; rounds run while the ``budget`` allows.
After each round the current parameters are MEASURED on ``measure_rollouts`` fresh episodes
that the operator never sees (measurement ``k`` samples with ``SeedSequence([seed, k])``, as
:func:`maml_robot.evaluate.adapt_tasks` does at its step ``k``, so the curves start from the
same rollouts); the x-axis is the live episodes used, ``k * cost``.

With ``paired`` every candidate of a round meets the same initial states and goals (the
operator compares them on equal terms, as a robot that replays the same goals would);
otherwise each candidate gets its own episodes.
"""

from dataclasses import dataclass, fields
import time
import warnings

from maml_robot.checkpoint import load_checkpoint
from maml_robot.meta.operators import (candidate_returns, MeanActionPolicy, OPERATORS,
                                       run_round)
from maml_robot.policy import stack_params
from maml_robot.results import MethodResult
import numpy as np

MEASURES = ('mean', 'stochastic')
"""How the measured parameters act: their mean action, or the Gaussian policy."""


@dataclass(frozen=True)
class OperatorEvalConfig:
    """Budget and measurement of one operator's adaptation curve."""

    budget: int = 48
    """Live episodes per task the operator may use."""
    measure_rollouts: int = 16
    """Fresh episodes per task behind each measured point."""
    measure: tuple = MEASURES
    """Measurements at each point, a subset of MEASURES (the first is the main one)."""
    paired: bool = True
    """Candidates of one round share their episodes' initial states and goals."""

    def __post_init__(self):
        """Reject budgets that cannot give a curve."""
        if self.budget < 1 or self.measure_rollouts < 1:
            raise ValueError(f'budget and measure_rollouts must be >= 1; got {self.budget}, '
                             f'{self.measure_rollouts}')
        if not self.measure or set(self.measure) - set(MEASURES):
            raise ValueError(f'measure must be a non-empty subset of {MEASURES}; '
                             f'got {self.measure}')
        object.__setattr__(self, 'measure', tuple(self.measure))


def _measure(policy, params_b, tasks, sampler, rollouts, mode, seed):
    """Return (mean, std) of fresh episode returns per task, each (B,)."""
    actor = policy if mode == 'stochastic' else MeanActionPolicy(policy)
    episodes = sampler.sample(actor, params_b, tasks, rollouts, seed=seed)  # (B, R, T)
    returns = np.stack([candidate_returns(episodes.task(b)) for b in range(len(tasks))])
    std = returns.std(axis=1, ddof=1) if rollouts > 1 else np.zeros(len(tasks))
    return returns.mean(axis=1), std


def budget_rounds(op, params, budget):
    """Return (live episodes per round, rounds within ``budget``); raise if not one round."""
    cost = len(op.ask(params, np.random.default_rng(0))) * op.episodes
    if budget < cost:
        raise ValueError(f'{op.name} needs {cost} live episodes per round but the budget is '
                         f'{budget}; raise the budget or use fewer candidates or episodes')
    return cost, budget // cost


def round_plan(op, params, budget):
    """
    Return the operator of every round: ``op`` within ``budget``, or phases run in turn.

    :param op: an operator, or a list of ``(operator, budget)`` phases (e.g. ``pg`` for 32
        episodes, then ``hill_climb`` for 16); ``budget`` is then ignored.
    :returns: list of ``(operator, live episodes of the round)``.
    """
    phases = op if isinstance(op, (list, tuple)) else [(op, budget)]
    plan = []
    for phase, phase_budget in phases:
        cost, rounds = budget_rounds(phase, params, phase_budget)
        plan += [(phase, cost)] * rounds
    return plan


def operator_curve(op, policy, params, tasks, sampler, cfg, *, seed=0, progress=None):
    """
    Run ``op`` on every task within ``cfg.budget`` live episodes; return its measured curve.

    :param op: an operator of :mod:`maml_robot.meta.operators`, or phases (:func:`round_plan`).
    :param params: the starting parameters (one dict, no batch dim).
    :param cfg: an :class:`OperatorEvalConfig`.
    :param seed: evaluation seed (measurement ``k`` uses ``SeedSequence([seed, k])``, round
        ``r``'s candidates ``[seed, 1, r]`` or, unpaired, ``[seed, 1, r, c]``; the operators'
        generator for task ``b`` is ``default_rng([seed, 2, b])``).
    :returns: dict of numpy arrays: ``returns[mode], returns_std[mode]`` (B, K + 1) for each
        measure, ``env_steps`` (B, K + 1), ``episodes`` (K + 1,) live episodes used before each
        point, ``wall_s`` (K + 1,) cumulative, and ``params`` the final per-task dicts.
    """
    start = time.perf_counter()
    current = [{k: v.detach() for k, v in params.items()} for _ in tasks]
    rngs = [np.random.default_rng([seed, 2, b]) for b in range(len(tasks))]
    plan = round_plan(op, params, cfg.budget)
    out = {'returns': {m: [] for m in cfg.measure}, 'returns_std': {m: [] for m in cfg.measure},
           'env_steps': [np.zeros(len(tasks))], 'wall_s': [],
           'episodes': np.cumsum([0] + [cost for _, cost in plan])}
    for k in range(len(plan) + 1):
        for mode in cfg.measure:
            mean, std = _measure(policy, stack_params(current), tasks, sampler,
                                 cfg.measure_rollouts, mode, np.random.SeedSequence([seed, k]))
            out['returns'][mode].append(mean)
            out['returns_std'][mode].append(std)
        if k < len(plan):
            step = plan[k][0]
            candidates = [step.ask(p, rng) for p, rng in zip(current, rngs)]
            current, used, _ = run_round(
                step, policy, current, candidates, tasks, sampler, lambda c: (
                    np.random.SeedSequence([seed, 1, k] if cfg.paired else [seed, 1, k, c])))
            out['env_steps'].append(out['env_steps'][-1] + used)
        out['wall_s'].append(time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
    for key in ('returns', 'returns_std'):
        out[key] = {m: np.stack(v, axis=1) for m, v in out[key].items()}     # (B, K + 1)
    out['env_steps'] = np.stack(out['env_steps'], axis=1)
    out['wall_s'] = np.asarray(out['wall_s'])
    out['params'] = current
    return out


def make_operator(name, policy, lr, inner_kwargs, settings):
    """
    Return the operator ``name`` (a key of OPERATORS) with ``settings`` {field: text}.

    Text values are converted to the type of the field's default (``None`` for
    ``max_delta``); ``pg`` also gets the checkpoint's policy, step size and advantage settings.
    ``pg``'s old setting ``inner_steps`` is taken as ``steps_per_batch`` (FutureWarning).
    """
    if name not in OPERATORS:
        raise ValueError(f'--adaptation {name!r} unknown; use one of {sorted(OPERATORS)}')
    cls = OPERATORS[name]
    if name == 'pg' and 'inner_steps' in settings:
        if 'steps_per_batch' in settings:
            raise ValueError('pg: inner_steps is the old name of steps_per_batch; give only '
                             'steps_per_batch')
        warnings.warn('the pg setting inner_steps was renamed steps_per_batch (inner_step calls '
                      'on the same episodes); use steps_per_batch=N', FutureWarning, stacklevel=2)
        settings = {('steps_per_batch' if k == 'inner_steps' else k): v
                    for k, v in settings.items()}
    internal = ('policy', 'lr', 'inner_kwargs', 'step_fn')
    known = {f.name: f for f in fields(cls) if f.name not in internal}
    if name == 'es':
        known['lr'] = next(f for f in fields(cls) if f.name == 'lr')
    values = {}
    for key, text in settings.items():
        if key not in known:
            raise ValueError(f'{name} has no setting {key!r}; it has {sorted(known)}')
        default = known[key].default
        values[key] = (None if text in ('None', 'none') else
                       text if isinstance(default, str) else
                       text.lower() in ('1', 'true', 'yes') if isinstance(default, bool) else
                       int(text) if isinstance(default, int) else float(text))
    if name == 'pg':
        return cls(policy=policy, lr=lr, inner_kwargs=inner_kwargs, **values)
    return cls(**values)


def parse_settings(items):
    """Return {key: text} from ``['key=value', ...]`` (``--adaptation-args``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'adaptation setting {item!r}: use KEY=VALUE, e.g. sigma=0.02')
        out[key.strip()] = value.strip()
    return out


def evaluate_operator(paths, source, tasks, task_ids, sampler, *, adaptation, settings, cfg,
                      eval_seeds, split, progress=None):
    """
    Evaluate checkpoints with the operator ``adaptation`` (``maml-robot eval --adaptation``).

    :param settings: the operator's settings, {field: text}.
    :param cfg: an :class:`OperatorEvalConfig`; ``cfg.measure[0]`` gives the reported returns.
    :returns: a :class:`~maml_robot.results.MethodResult` (``method='maml'``) whose steps are
        rounds; ``config['live_episodes']`` holds the live episodes used before each step.
    """
    runs, groups, outs, main = [], [], [], cfg.measure[0]
    for i, path in enumerate(paths):
        ckpt = load_checkpoint(path)
        if ckpt.scenario_name != source.name:
            raise ValueError(f'{path} was trained on scenario {ckpt.scenario_name!r}, not '
                             f'{source.name!r}; pass --scenario or a matching checkpoint')
        policy = ckpt.make_policy().to(sampler.device)
        op = make_operator(adaptation, policy, ckpt.inner_step_size(),
                           ckpt.inner_config().advantage_kwargs(), settings)
        for seed in eval_seeds:
            outs.append(operator_curve(op, policy, ckpt.params, tasks, sampler, cfg,
                                       seed=int(seed), progress=progress))
            runs.append(f'ckpt{i}/seed{seed}')
            groups.append(f'ckpt{i}')
    return MethodResult(
        method='maml', label=f'meta-policy + {adaptation}', scenario=source.name, split=split,
        task_ids=task_ids, runs=runs, groups=groups,
        steps=np.arange(len(outs[0]['episodes'])),
        env_steps=np.stack([o['env_steps'] for o in outs]),
        returns=np.stack([o['returns'][main] for o in outs]),
        returns_std=np.stack([o['returns_std'][main] for o in outs]),
        rollouts=cfg.measure_rollouts, wall_s=np.stack([o['wall_s'] for o in outs]),
        config={'checkpoints': [str(p) for p in paths], 'adaptation': adaptation,
                'settings': dict(settings), 'budget': cfg.budget, 'measure': main,
                'paired': cfg.paired, 'live_episodes': outs[0]['episodes'].tolist(),
                'rollouts_per_step': cfg.measure_rollouts,
                'adapt_steps': len(outs[0]['episodes']) - 1,
                'eval_seeds': [int(s) for s in eval_seeds], 'fingerprint': source.fingerprint})
