"""
Adaptation operators behind one ask/tell interface: the meta-learned PG step, BHC and ES.

Every operator is a frozen dataclass of settings and two pure methods:

* ``ask(params, rng) -> candidates``: the parameter dicts to roll out next, each for
  ``op.episodes`` live episodes (``rng``: a ``numpy.random.Generator``, the only randomness);
* ``tell(params, candidates, episodes) -> new params``: ``episodes[i]`` are the
  :class:`~maml_robot.episodes.Episodes` (E, T) of ``candidates[i]``.

``op.stochastic`` says how the candidates are rolled out: with the Gaussian policy (``pg``,
whose gradient needs the sampled actions) or with its mean action (the derivative-free
operators: their fitness is the return of the deterministic controller, without the action
noise; :class:`MeanActionPolicy`). One round costs ``len(candidates) * op.episodes`` live
episodes. Inputs are never modified; ``tell`` returns a new dict.

* ``pg``: :func:`maml_robot.meta.inner.inner_step`, the update meta-training optimized.
* ``hill_climb``: Batch Hill-Climbing (Song et al., IROS 2020): the incumbent and ``batch``
  Gaussian perturbations of it are evaluated each round (the incumbent afresh, so a lucky
  evaluation is not carried over); the best perturbation replaces the incumbent only if its
  mean return beats the incumbent's by a noise-aware margin.
* ``es``: one ES gradient step (ES-MAML, Song et al., ICLR 2020) from ``pairs`` antithetic
  perturbations with centered-rank fitness shaping.

The derivative-free operators perturb only the parameters of their ``space`` (``SPACES``; never
``log_std``, which the mean action ignores) and change no entry by more than ``max_delta`` per
update (the whole step is scaled down, its direction kept).
"""

from dataclasses import dataclass, field

from maml_robot.meta.inner import inner_step
from maml_robot.policy import stack_params
import numpy as np
import torch

SPACES = {
    'all': None,                            # every parameter but log_std
    'last': ('mean.weight', 'mean.bias'),   # the output layer
    'bias': ('mean.bias',),                 # the output bias: a constant action offset
}
"""Named parameter subspaces the derivative-free operators search."""


def space_names(params, space):
    """Return the parameter names that ``space`` (a key of SPACES) perturbs, in a fixed order."""
    if space not in SPACES:
        raise ValueError(f'adaptation space {space!r} unknown; use one of {sorted(SPACES)}')
    names = SPACES[space]
    if names is None:   # sorted: a loaded checkpoint's dict order varies between processes
        return tuple(sorted(k for k in params if k != 'log_std'))
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f'space {space!r} needs parameters {missing}; have {sorted(params)}')
    return names


def candidate_returns(episodes):
    """Return the undiscounted return of each episode of one candidate, shape (E,) numpy."""
    return episodes.returns(torch.float64, 'cpu').detach().numpy()


def bounded(delta, max_delta):
    """Scale the step ``delta`` (dict) so that no entry exceeds ``max_delta`` in magnitude."""
    if max_delta is None or not delta:
        return delta
    largest = max(float(d.abs().max()) for d in delta.values())
    scale = min(1.0, max_delta / largest) if largest > 0 else 1.0
    return {k: d * scale for k, d in delta.items()}


def shifted(params, delta):
    """Return a NEW dict ``params + delta`` (names absent from ``delta`` are shared)."""
    return {k: (p + delta[k].to(p) if k in delta else p) for k, p in params.items()}


def gaussian_directions(params, names, rng):
    """Return a dict of standard normal tensors shaped like ``params[name]`` for ``names``."""
    return {n: torch.from_numpy(rng.standard_normal(tuple(params[n].shape)))
            for n in names}


def _check_settings(op):
    if op.episodes < 1:
        raise ValueError(f'{op.name}: episodes per candidate must be >= 1, got {op.episodes}')
    if not op.sigma > 0:
        raise ValueError(f'{op.name}: sigma must be > 0, got {op.sigma}')
    if op.max_delta is not None and not op.max_delta > 0:
        raise ValueError(f'{op.name}: max_delta must be > 0 or None, got {op.max_delta}')
    if op.space not in SPACES:
        raise ValueError(f'{op.name}: space {op.space!r} unknown; use one of {sorted(SPACES)}')


@dataclass(frozen=True)
class PolicyGradient:
    """The meta-learned inner step (``inner_step``) as an operator: one candidate, itself."""

    policy: object
    """The :class:`~maml_robot.policy.GaussianPolicy` the step differentiates."""
    lr: object
    """Inner step size: a float or the checkpoint's dict of per-parameter tensors."""
    episodes: int = 16
    """Live episodes per update (R)."""
    inner_kwargs: dict = field(default_factory=dict)
    """Advantage settings (``InnerConfig.advantage_kwargs()``)."""
    steps_per_batch: int = 1
    """inner_step calls on the same episodes (training's ``inner_steps`` sample afresh)."""
    step_fn: object = None
    """The update, called as ``inner_step``; None: :func:`maml_robot.meta.inner.inner_step`."""
    name = 'pg'
    stochastic = True

    def ask(self, params, rng):
        """Return ``[params]``: the policy gradient needs rollouts of the current policy."""
        return [params]

    def tell(self, params, candidates, episodes):
        """Return ``inner_step`` applied ``steps_per_batch`` times (first order, detached)."""
        step = self.step_fn if self.step_fn is not None else inner_step
        device = episodes[0].rewards.device
        new = {k: p.detach().to(device) for k, p in params.items()}
        for _ in range(self.steps_per_batch):
            new = {k: p.detach() for k, p in step(
                self.policy, new, episodes[0], self.lr, first_order=True,
                **self.inner_kwargs).items()}
        return new


@dataclass(frozen=True)
class HillClimb:
    """Batch Hill-Climbing: accept the best perturbation only if it clearly beats the incumbent."""

    sigma: float = 0.02
    """Standard deviation of each perturbed entry."""
    batch: int = 4
    """Perturbations per round (the incumbent is evaluated as well: ``batch + 1`` candidates)."""
    episodes: int = 2
    """Live episodes per candidate (E)."""
    z: float = 1.0
    """Margin in standard errors of the difference of two candidate means."""
    min_margin: float = 0.0
    """Smallest margin (return units); the only one when E = 1 (no spread to estimate)."""
    max_delta: float = None
    """Largest change of one entry per accepted step (None: unbounded)."""
    space: str = 'all'
    """Parameters perturbed: a key of SPACES."""
    paired: bool = False
    """The candidates of a round meet the same episodes (goals): margin from paired differences."""
    name = 'hill_climb'
    stochastic = False

    def __post_init__(self):
        """Reject settings that cannot run."""
        _check_settings(self)
        if self.batch < 1 or self.z < 0 or self.min_margin < 0:
            raise ValueError(f'hill_climb: need batch >= 1, z >= 0, min_margin >= 0; got '
                             f'{self.batch}, {self.z}, {self.min_margin}')

    def ask(self, params, rng):
        """Return ``[params, params + d_1, ..., params + d_batch]``, ``d ~ N(0, sigma^2)``."""
        names = space_names(params, self.space)
        out = [params]
        for _ in range(self.batch):
            direction = gaussian_directions(params, names, rng)
            out.append(shifted(params, bounded(
                {n: self.sigma * d for n, d in direction.items()}, self.max_delta)))
        return out

    def margin(self, returns, best=1):
        """
        Return the acceptance margin from (batch + 1, E) returns: z standard errors, floored.

        Unpaired: the standard error of a difference of two means, from the spread pooled over
        the candidates. ``paired`` (every candidate met the same E episodes' goals): from the
        spread of the per-episode differences between ``best`` and the incumbent, where the
        goal-to-goal variation cancels.
        """
        returns = np.asarray(returns, dtype=np.float64)
        episodes = returns.shape[1]
        if episodes < 2:
            return self.min_margin
        if self.paired:
            se = float(np.std(returns[best] - returns[0], ddof=1)) / np.sqrt(episodes)
        else:
            se = float(np.sqrt(returns.var(axis=1, ddof=1).mean() * 2.0 / episodes))
        return max(self.min_margin, self.z * se)

    def update(self, params, candidates, returns):
        """Return the best perturbation if it beats ``candidates[0]`` by the margin, or params."""
        returns = np.asarray(returns, dtype=np.float64)            # (batch + 1, E)
        means = returns.mean(axis=1)
        best = 1 + int(np.argmax(means[1:]))
        if means[best] > means[0] + self.margin(returns, best):
            return dict(candidates[best])
        return dict(params)

    def tell(self, params, candidates, episodes):
        """Return :meth:`update` on the candidates' episode returns."""
        return self.update(params, candidates, [candidate_returns(e) for e in episodes])


def centered_ranks(values):
    """Return the fitness shaping of ES: ranks scaled to [-0.5, 0.5] (ties share a rank)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return np.zeros_like(values)
    order = np.argsort(values, kind='stable')
    ranks = np.empty(values.size)
    ranks[order] = np.arange(values.size)
    for v in np.unique(values):                # ties get their mean rank
        ranks[values == v] = ranks[values == v].mean()
    return ranks / (values.size - 1) - 0.5


@dataclass(frozen=True)
class EvolutionStrategies:
    """One ES step: antithetic pairs, centered-rank shaping, ``theta + lr * g``."""

    sigma: float = 0.02
    """Standard deviation of each perturbed entry."""
    pairs: int = 4
    """Antithetic pairs per step (``2 * pairs`` candidates)."""
    episodes: int = 2
    """Live episodes per candidate (E)."""
    lr: float = 0.02
    """Step size on the shaped gradient estimate."""
    max_delta: float = None
    """Largest change of one entry per step (None: unbounded)."""
    space: str = 'all'
    """Parameters perturbed: a key of SPACES."""
    name = 'es'
    stochastic = False

    def __post_init__(self):
        """Reject settings that cannot run."""
        _check_settings(self)
        if self.pairs < 1 or not self.lr > 0:
            raise ValueError(f'es: need pairs >= 1 and lr > 0; got {self.pairs}, {self.lr}')

    def ask(self, params, rng):
        """Return ``[params + sigma e_1, params - sigma e_1, ...]`` for ``pairs`` draws e_i."""
        names = space_names(params, self.space)
        out = []
        for _ in range(self.pairs):
            direction = gaussian_directions(params, names, rng)
            out.append(shifted(params, {n: self.sigma * d for n, d in direction.items()}))
            out.append(shifted(params, {n: -self.sigma * d for n, d in direction.items()}))
        return out

    def gradient(self, params, candidates, returns):
        """Return ``g = 1 / (2 n sigma) sum_i (u_i+ - u_i-) e_i`` (u: shaped mean returns)."""
        names = space_names(params, self.space)
        utility = centered_ranks(np.asarray(returns, dtype=np.float64).mean(axis=1))
        grad = {n: torch.zeros_like(params[n]) for n in names}
        for i in range(self.pairs):
            plus, minus = candidates[2 * i], candidates[2 * i + 1]
            weight = (utility[2 * i] - utility[2 * i + 1]) / (2 * self.pairs * self.sigma)
            for n in names:    # e_i recovered from the candidate: (plus - minus) / (2 sigma)
                grad[n] = grad[n] + weight * (plus[n] - minus[n]) / (2 * self.sigma)
        return grad

    def update(self, params, candidates, returns):
        """Return ``params + lr * g``, the step bounded by ``max_delta``."""
        grad = self.gradient(params, candidates, returns)
        return shifted(params, bounded({n: self.lr * g for n, g in grad.items()},
                                       self.max_delta))

    def tell(self, params, candidates, episodes):
        """Return :meth:`update` on the candidates' episode returns."""
        return self.update(params, candidates, [candidate_returns(e) for e in episodes])


OPERATORS = {'pg': PolicyGradient, 'hill_climb': HillClimb, 'es': EvolutionStrategies}
"""Operator classes by the name ``--adaptation`` takes."""


class MeanActionPolicy:
    """A policy whose sampled action is its mean: rolls out the deterministic controller."""

    deterministic = True
    """Tells the sampler's worker-side rollouts (``inference='workers'``) to add no noise."""

    def __init__(self, policy):
        """:param policy: the :class:`~maml_robot.policy.GaussianPolicy` to wrap."""
        self.policy = policy

    def __getattr__(self, name):
        """Delegate everything else (config, normalize, mean_action, ...) to the policy."""
        if name == 'policy':      # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.policy, name)

    def sample(self, params, obs, generator=None):
        """Return ``(mean actions (..., act_dim), zeros (...))``: no exploration noise."""
        with torch.no_grad():
            mean = self.policy.mean_action(params, obs)
            return mean, torch.zeros(mean.shape[:-1], dtype=mean.dtype, device=mean.device)

    def batched_sample(self, params_b, obs_b, generator=None):
        """Batched :meth:`sample` for B tasks (params with a leading B dim)."""
        with torch.no_grad():
            mean = self.policy.batched_mean_action(params_b, obs_b)
            return mean, torch.zeros(mean.shape[:-1], dtype=mean.dtype, device=mean.device)


def run_round(op, policy, current, candidates, tasks, sampler, seed):
    """
    Roll out every candidate of every task on ``sampler`` and tell ``op`` the episodes.

    :param current: the parameters of each task (B dicts); ``candidates[b]`` their
        ``op.ask`` answer (the same number C for every task).
    :param seed: ``seed(c) -> SeedSequence`` of candidate ``c``'s episodes (the same one for
        every ``c`` when the candidates of a round should meet the same starts and goals).
    :returns: ``(new params (B dicts), env steps (B,), returns (B, C, E))`` numpy arrays.
    """
    actor = policy if op.stochastic else MeanActionPolicy(policy)
    per_task = [[] for _ in tasks]
    used = np.zeros(len(tasks))
    for c in range(len(candidates[0])):
        params_b = stack_params([cands[c] for cands in candidates])
        episodes = sampler.sample(actor, params_b, tasks, op.episodes,
                                  seed=seed(c))                  # (B, E, T, ...)
        used += episodes.mask.detach().cpu().double().sum((-1, -2)).numpy()
        for b in range(len(tasks)):
            per_task[b].append(episodes.task(b))
    new = [op.tell(p, cands, eps) for p, cands, eps in zip(current, candidates, per_task)]
    for params in new:
        if not all(bool(v.isfinite().all()) for v in params.values()):
            raise ValueError(f'{op.name} produced non-finite parameters; lower its step')
    returns = np.asarray([[candidate_returns(e) for e in eps] for eps in per_task])
    return new, used, returns                                    # returns: (B, C, E)
