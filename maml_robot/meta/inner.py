"""
THE inner-loop update: one policy-gradient step with the linear feature baseline.

Used unchanged by meta-training (batched over tasks with ``adapt_batched``), evaluation and
the online adapter (one task, live rollouts of unequal length). Pure: params in, new params out.
"""

from dataclasses import asdict, dataclass
import math

from maml_robot.meta.baseline import linear_baseline_values
from maml_robot.meta.losses import masked_mean, SURROGATES
from maml_robot.meta.returns import gae_advantages
import torch

BASELINES = ('linear', 'none')


@dataclass
class InnerConfig:
    """Inner-loop settings: stored in checkpoints so deployment adapts as training did."""

    lr: float = 0.1
    """Inner step size alpha (initial value of every per-parameter step when learn_lr)."""
    learn_lr: bool = False
    """Meta-SGD (Li et al. 2017): one learned step size per parameter entry."""
    lr_per: str = 'entry'
    """With ``learn_lr``: 'entry' (Meta-SGD, one step size per parameter entry) or 'tensor'
    (one per parameter tensor, i.e. per layer: the LSLR of MAML++, Antoniou et al. 2019)."""
    fixed_lr: tuple = ('log_std',)
    """With ``learn_lr``: parameters whose step size stays ``lr`` (not learned). The
    exploration scale by default: learning its step made the post-update std jump by a
    factor of ~40 in one step and the meta-gradient NaN (reacher, docs/ALGORITHMS.md)."""
    gamma: float = 0.99
    """Discount factor of the inner policy gradient."""
    gae_lambda: float = 1.0
    """GAE lambda; 1.0 gives returns minus the baseline (MAML)."""
    normalize_advantages: bool = True
    """Standardize advantages per task over its valid steps."""
    baseline: str = 'linear'
    """'linear' (feature baseline fitted per task) or 'none' (raw returns)."""
    baseline_reg: float = 1e-5
    """Relative ridge coefficient of the baseline fit."""
    steps: int = 1
    """Inner steps (each with fresh samples; the caller samples)."""

    def __post_init__(self):
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f'inner lr must be finite and >= 0, got {self.lr}')
        if not (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ValueError('gamma and gae_lambda must be in [0, 1]')
        if self.baseline not in BASELINES:
            raise ValueError(f'baseline {self.baseline!r} unknown; use one of {BASELINES}')
        if int(self.steps) < 1:
            raise ValueError(f'inner steps must be >= 1, got {self.steps}')
        if self.lr_per not in ('entry', 'tensor'):
            raise ValueError(f"lr_per must be 'entry' or 'tensor', got {self.lr_per!r}")
        if isinstance(self.fixed_lr, str) or not all(isinstance(k, str) for k in self.fixed_lr):
            raise ValueError(f'fixed_lr must be a list of parameter names, got {self.fixed_lr!r}')
        object.__setattr__(self, 'fixed_lr', tuple(self.fixed_lr))

    def to_dict(self):
        """Return a JSON-able dict."""
        return dict(asdict(self), fixed_lr=list(self.fixed_lr))

    @classmethod
    def from_dict(cls, d):
        """Rebuild from ``to_dict()``."""
        return cls(**d)

    def advantage_kwargs(self):
        """Keyword arguments of :func:`compute_advantages` / :func:`inner_step`."""
        return {'gamma': self.gamma, 'gae_lambda': self.gae_lambda,
                'normalize_advantages': self.normalize_advantages, 'baseline': self.baseline,
                'baseline_reg': self.baseline_reg}


def init_inner_lr(config, params):
    """Return the inner step size: a float, or (Meta-SGD) a dict of tensors like ``params``."""
    if not config.learn_lr:
        return float(config.lr)
    if config.lr_per == 'tensor':
        return {k: torch.full((), float(config.lr), dtype=v.dtype, device=v.device)
                for k, v in params.items()}
    return {k: torch.full_like(v.detach(), float(config.lr)) for k, v in params.items()}


def compute_advantages(policy, episodes, *, gamma=0.99, gae_lambda=1.0,
                       normalize_advantages=True, baseline='linear', baseline_reg=1e-5,
                       return_scale=False):
    """
    Return advantages (..., N, T) for Episodes with any leading dims (no gradient).

    The baseline is fitted per task (over that task's N rollouts) on normalized observations;
    normalization standardizes over each task's valid steps. With ``return_scale`` it returns
    ``(advantages, scale)``, ``scale`` (...) the factor normalization applied (1 without).
    """
    if baseline not in BASELINES:
        raise ValueError(f'baseline {baseline!r} unknown; use one of {BASELINES}')
    with torch.no_grad():
        rewards, mask = episodes.rewards, episodes.mask
        if baseline == 'linear':
            values = linear_baseline_values(policy.normalize(episodes.observations), rewards,
                                            mask, gamma, baseline_reg)
        else:
            values = torch.zeros_like(rewards)
        adv = gae_advantages(rewards, values, mask, gamma, gae_lambda)
        scale = torch.ones(adv.shape[:-2], dtype=adv.dtype, device=adv.device)
        if normalize_advantages:
            mean = masked_mean(adv, mask)[..., None, None]
            var = masked_mean((adv - mean) ** 2, mask)
            scale = 1.0 / (var.sqrt() + 1e-8)
            adv = (adv - mean) * scale[..., None, None] * mask
    return (adv, scale) if return_scale else adv


def apply_update(params, grads, lr):
    """Return ``{k: params[k] - lr_k * grads[k]}`` (``lr`` a float or a dict); a NEW dict."""
    if isinstance(lr, dict):
        missing = set(params) - set(lr)
        if missing:
            raise ValueError(f'per-parameter lr lacks {sorted(missing)}')
        return {k: p - lr[k] * grads[k] for k, p in params.items()}
    return {k: p - lr * grads[k] for k, p in params.items()}


def sgd_step(loss_fn, params, lr, first_order=False):
    """
    One differentiable gradient step on ``loss_fn(params)``; returns new params.

    The gradient comes from ``torch.func.grad``, so this works inside ``vmap`` and keeps the
    graph for the meta-gradient (second order) unless ``first_order``.
    """
    grads = torch.func.grad(loss_fn)(params)
    if first_order:
        grads = {k: g.detach() for k, g in grads.items()}
    return apply_update(params, grads, lr)


def inner_step(policy, params, episodes, lr, *, first_order=False, gamma=0.99, gae_lambda=1.0,
               normalize_advantages=True, baseline='linear', baseline_reg=1e-5,
               surrogate='pg', advantages=None, validate=True):
    """
    One policy-gradient step on one task's episodes; returns NEW params (inputs unchanged).

    ``theta' = theta + lr * grad_theta mean_valid(log pi_theta(a|s) A)``.

    :param policy: a :class:`~maml_robot.policy.GaussianPolicy` (or anything with
        ``log_prob(params, obs, actions)`` and ``normalize(obs)``).
    :param params: dict of tensors (the meta-parameters, possibly requiring grad).
    :param episodes: :class:`Episodes` of shape (N, T) (rollouts may differ in length: mask).
    :param lr: float, or dict of per-parameter tensors (Meta-SGD, meta-learned).
    :param first_order: drop second-order terms (FOMAML); otherwise the step is differentiable.
    :param surrogate: 'pg' (vanilla) or 'lvc' (ProMP): same step, different curvature;
        'lvc_is' importance-weights by the sampling policy's ``episodes.log_probs``.
    :param advantages: precomputed (N, T) advantages; computed from ``episodes`` when None.
    :param validate: raise ValueError on NaN/inf in the episodes (turn off under ``vmap``).
    """
    if surrogate not in SURROGATES:
        raise ValueError(f'surrogate {surrogate!r} unknown; use one of {sorted(SURROGATES)}')
    if validate:
        episodes.check_finite()
    if advantages is None:
        advantages = compute_advantages(
            policy, episodes, gamma=gamma, gae_lambda=gae_lambda,
            normalize_advantages=normalize_advantages, baseline=baseline,
            baseline_reg=baseline_reg)
    return _step(policy, params, episodes.observations, episodes.actions, episodes.mask,
                 episodes.log_probs, advantages, lr, surrogate, first_order)


def _step(policy, params, obs, actions, mask, old_log_probs, advantages, lr, surrogate,
          first_order):
    objective = SURROGATES[surrogate]

    def loss_fn(p):
        return -objective(policy.log_prob(p, obs, actions), advantages, mask, old_log_probs)

    return sgd_step(loss_fn, params, lr, first_order)


def adapt_batched(policy, params, episodes, lr, *, first_order=False, gamma=0.99,
                  gae_lambda=1.0, normalize_advantages=True, baseline='linear',
                  baseline_reg=1e-5, surrogate='pg', advantages=None, params_batched=False):
    """
    :func:`inner_step` for B tasks in one ``torch.func.vmap`` call (no Python loop).

    :param params: meta-parameters shared by all tasks, or (``params_batched``) a dict whose
        tensors have a leading B dim (e.g. for a second inner step).
    :param episodes: Episodes of shape (B, N, T).
    :param lr: float or dict of per-parameter tensors (shared by the tasks).
    :returns: adapted params with a leading B dim.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f'surrogate {surrogate!r} unknown; use one of {sorted(SURROGATES)}')
    if len(episodes.batch_shape) != 1:
        raise ValueError(f'adapt_batched needs Episodes of shape (B, N, T), got batch shape '
                         f'{episodes.batch_shape} + (N, T)')
    if advantages is None:
        advantages = compute_advantages(
            policy, episodes, gamma=gamma, gae_lambda=gae_lambda,
            normalize_advantages=normalize_advantages, baseline=baseline,
            baseline_reg=baseline_reg)

    def one_task(p, obs, actions, mask, old_log_probs, adv):
        return _step(policy, p, obs, actions, mask, old_log_probs, adv, lr, surrogate,
                     first_order)

    in_dims = (0 if params_batched else None, 0, 0, 0, 0, 0)
    return torch.func.vmap(one_task, in_dims=in_dims)(
        params, episodes.observations, episodes.actions, episodes.mask, episodes.log_probs,
        advantages)
