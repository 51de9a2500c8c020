"""
Shared machinery of the outer (meta) learners: adaptation, meta-objective, saved state.

A learner owns the meta-parameters (policy params and, with Meta-SGD, the inner step sizes).
``adapt(pre_episodes)`` gives the adapted params to sample post-update episodes with;
``meta_step(pre_episodes, post_episodes)`` updates the meta-parameters. ``state_dict()`` is
``{'tensors': {name: Tensor}, 'extra': JSON-able dict}`` (no pickle), for exact resume.
"""

from dataclasses import asdict

from maml_robot.episodes import Episodes
from maml_robot.meta.inner import adapt_batched, compute_advantages, init_inner_lr
from maml_robot.meta.losses import dice_score_term
from maml_robot.meta.returns import discounted_total
import torch

ESTIMATORS = ('lvc', 'dice', 'naive')
"""Meta-gradient estimators:

- 'lvc': ProMP's low-variance curvature inner objective (default; low variance, small bias);
- 'dice': unbiased: the vanilla inner step differentiated for fixed samples plus the score term
  through the pre-update sampling distribution (DiCE);
- 'naive': the vanilla inner step alone (what the MAML paper's code computes; biased).
"""


def check_common(config):
    """Validate the fields every learner config shares."""
    if config.estimator not in ESTIMATORS:
        raise ValueError(f'estimator {config.estimator!r} unknown; use one of {ESTIMATORS}')
    if config.post_baseline not in ('linear', 'none'):
        raise ValueError(f"post_baseline must be 'linear' or 'none', got {config.post_baseline!r}")


def as_steps(pre_episodes):
    """Return the pre-update episodes as a list (one Episodes per inner step)."""
    steps = [pre_episodes] if isinstance(pre_episodes, Episodes) else list(pre_episodes)
    if not steps:
        raise ValueError('pre_episodes is empty; pass Episodes (B, N, T) or a list of them')
    for e in steps:
        if len(e.batch_shape) != 1:
            raise ValueError(f'pre/post episodes must be (B, N, T), got batch {e.batch_shape}')
    return steps


class MetaLearner:
    """Base class: meta-parameters, batched adaptation, meta-objective, state."""

    algorithm = 'base'

    def __init__(self, policy, params, inner, config):
        """
        Build the learner.

        :param policy: the :class:`~maml_robot.policy.GaussianPolicy` (its normalization is
            used as is; update it between iterations, never during ``meta_step``).
        :param params: initial meta-parameters (copied; put them on the training device).
        :param inner: :class:`~maml_robot.meta.inner.InnerConfig`.
        :param config: the algorithm's config dataclass.
        """
        policy.check_params(params)
        self.policy = policy
        self.inner = inner
        self.config = config
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        lr = init_inner_lr(inner, self.params)
        if isinstance(lr, dict):
            lr = {k: v.requires_grad_(k not in inner.fixed_lr) for k, v in lr.items()}
        self.inner_lr = lr
        self.iteration = 0

    # ------------------------------------------------------------------------------ parameters
    def named_meta_parameters(self):
        """Return ``[(name, tensor)]`` of everything the outer loop trains."""
        named = [(f'params.{k}', v) for k, v in self.params.items()]
        if isinstance(self.inner_lr, dict):
            named += [(f'inner_lr.{k}', v) for k, v in self.inner_lr.items()
                      if k not in self.inner.fixed_lr]
        return named

    def meta_parameters(self):
        """Return the trained tensors, in ``named_meta_parameters`` order."""
        return [v for _, v in self.named_meta_parameters()]

    def current_params(self):
        """Return a detached copy of the meta-parameters (for checkpoints and evaluation)."""
        return {k: v.detach().clone() for k, v in self.params.items()}

    def current_inner_lr(self):
        """Return the inner lr: a float, or a detached copy of the Meta-SGD tensors."""
        if isinstance(self.inner_lr, dict):
            return {k: v.detach().clone() for k, v in self.inner_lr.items()}
        return self.inner_lr

    def adaptation(self):
        """Return the adaptation operator the meta-parameters are trained for (checkpoint)."""
        return {'operator': 'pg'}

    # ------------------------------------------------------------------------------ adaptation
    def pre_advantages(self, episodes):
        """Return inner-loop advantages (B, N, T) with the inner settings."""
        return compute_advantages(self.policy, episodes, **self.inner.advantage_kwargs())

    def post_advantages(self, episodes):
        """Return ``(advantages (B, N, T), scale (B,))`` for the outer objective."""
        kw = self.inner.advantage_kwargs()
        kw.update(baseline=self.config.post_baseline,
                  normalize_advantages=self.config.normalize_post_advantages)
        return compute_advantages(self.policy, episodes, return_scale=True, **kw)

    def inner_surrogate(self, importance_weighted=False):
        """Return the inner surrogate name the estimator needs."""
        if self.config.estimator == 'lvc':
            return 'lvc_is' if importance_weighted else 'lvc'
        return 'pg'

    def adapt(self, pre_episodes):
        """Return adapted params (leading B dim, no graph) to sample post-update episodes."""
        with torch.no_grad():
            params_b = None
            for k, e in enumerate(as_steps(pre_episodes)):
                params_b = adapt_batched(
                    self.policy, self.params if k == 0 else params_b, e,
                    self.current_inner_lr(), first_order=True, params_batched=k > 0,
                    **self.inner.advantage_kwargs())
            return {k: v.detach() for k, v in params_b.items()}

    def adapt_with_graph(self, steps, advantages, importance_weighted=False):
        """
        Return ``(params_B, pre_log_probs)``: the differentiable adaptation.

        ``pre_log_probs`` (DiCE only, else None) are the pre-update log-probs under the params
        that sampled each inner step's episodes.
        """
        params_b = self.params
        logps = []
        dice = self.config.estimator == 'dice' and not self.config.first_order
        for k, (e, adv) in enumerate(zip(steps, advantages)):
            if dice:
                if k == 0:
                    logps.append(self.policy.log_prob(params_b, e.observations, e.actions))
                else:
                    logps.append(self.policy.batched_log_prob(params_b, e.observations,
                                                              e.actions))
            params_b = adapt_batched(
                self.policy, params_b, e, self.inner_lr, first_order=self.config.first_order,
                surrogate=self.inner_surrogate(importance_weighted), advantages=adv,
                params_batched=k > 0)
        return params_b, logps if dice else None

    def score_term(self, steps, pre_log_probs, post, post_scale):
        """
        Return the DiCE score term per task (B,) in the units of the post surrogate.

        The post surrogate averages over valid steps and uses advantages scaled by
        ``post_scale``; the score weight ``J_post`` is converted the same way. Its baseline is
        the leave-one-out mean over the other tasks (independent of this task's samples).
        """
        gamma = self.inner.gamma
        steps_per_rollout = post.mask.sum((-2, -1)) / post.num_rollouts  # (B,)
        value = discounted_total(post.rewards, post.mask, gamma).mean(-1)  # (B,)
        value = value * post_scale / steps_per_rollout.clamp(min=1.0)
        n = value.shape[0]
        base = (value.sum() - value) / (n - 1) if n > 1 else torch.zeros_like(value)
        total = 0.0
        for e, logp in zip(steps, pre_log_probs):
            total = total + dice_score_term(logp, e.mask, value, base)
        return total

    # ----------------------------------------------------------------------------------- state
    def extra_state(self):
        """Return algorithm-specific JSON-able state (override)."""
        return {}

    def load_extra_state(self, extra):
        """Restore ``extra_state()`` (override)."""

    def extra_tensors(self):
        """Return algorithm-specific tensors (override), e.g. optimizer moments."""
        return {}

    def load_extra_tensors(self, tensors):
        """Restore ``extra_tensors()`` (override)."""

    def state_dict(self):
        """Return ``{'tensors': {name: Tensor}, 'extra': JSON-able}``: everything to resume."""
        tensors = {name: v.detach().cpu().clone() for name, v in self.named_meta_parameters()}
        tensors.update(self.extra_tensors())
        extra = {'algorithm': self.algorithm, 'config': asdict(self.config),
                 'inner': self.inner.to_dict(), 'iteration': self.iteration}
        extra.update(self.extra_state())
        return {'tensors': tensors, 'extra': extra}

    def load_state_dict(self, state):
        """Restore from ``state_dict()`` (tensors and JSON); raises ValueError on mismatch."""
        tensors, extra = state['tensors'], state['extra']
        if extra.get('algorithm') != self.algorithm:
            raise ValueError(f'state is for algorithm {extra.get("algorithm")!r}, this learner '
                             f'is {self.algorithm!r}; build the learner the state came from')
        if extra.get('inner') != self.inner.to_dict():
            raise ValueError(f'state was saved with inner settings {extra.get("inner")}, this '
                             f'learner has {self.inner.to_dict()}')
        named = self.named_meta_parameters()
        missing = [n for n, _ in named if n not in tensors]
        if missing:
            raise ValueError(f'learner state lacks tensors {missing}')
        with torch.no_grad():
            for name, v in named:
                if tuple(tensors[name].shape) != tuple(v.shape):
                    raise ValueError(f'learner state {name!r} has shape '
                                     f'{tuple(tensors[name].shape)}, expected {tuple(v.shape)}')
                v.copy_(tensors[name])
        self.iteration = int(extra['iteration'])
        self.load_extra_tensors(tensors)
        self.load_extra_state(extra)


def task_stats(pre_steps, post):
    """Return mean undiscounted returns before and after adaptation (floats)."""
    return {'pre_return': float(pre_steps[0].mean_return().mean()),
            'post_return': float(post.mean_return().mean())}
