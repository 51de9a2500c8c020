"""ProMP (Rothfuss et al. 2019): LVC inner step, clipped meta-objective, KL penalty, Adam."""

from dataclasses import dataclass
import math

from maml_robot.meta.learner import as_steps, check_common, MetaLearner, task_stats
from maml_robot.meta.losses import clip_surrogate, masked_mean
import torch


@dataclass
class ProMPConfig:
    """Settings of the ProMP outer loop (defaults from the ProMP paper's experiments)."""

    outer_lr: float = 1e-3
    """Adam step size of the meta-parameters."""
    num_outer_steps: int = 5
    """Gradient steps on the same pre/post episodes per iteration."""
    clip_eps: float = 0.3
    """Clip range of the post-update likelihood ratio."""
    kl_coeff: float = 5e-4
    """Initial weight eta of the KL(pi_theta_old || pi_theta) penalty on pre-update data."""
    target_kl: float = 0.01
    """Target KL when ``adaptive_kl``: the weight halves below target/1.5, doubles above 1.5x."""
    adaptive_kl: bool = False
    """Adapt ``kl_coeff`` towards ``target_kl`` after every iteration."""
    estimator: str = 'lvc'
    """Meta-gradient estimator: 'lvc' (ProMP), 'dice' (unbiased) or 'naive' (MAML code)."""
    first_order: bool = False
    """First-order MAML: no gradient through the inner step's gradient."""
    post_baseline: str = 'linear'
    """Baseline of the post-update advantages: 'linear' or 'none'."""
    normalize_post_advantages: bool = True
    """Standardize post-update advantages per task."""
    max_grad_norm: float = 0.0
    """Clip the meta-gradient norm to this value; 0 disables."""
    max_post_clip_frac: float = 0.0
    """Outer-step trust region; 0 disables. After each Adam step the loss is evaluated again:
    if it is not finite or more than this share of the post-update samples left the clip range
    (the post-update policy moved too far), the step is halved back towards the previous
    parameters (up to ``max_backtracks`` times), or else undone and the iteration's remaining
    outer steps skipped. Needed with Meta-SGD, whose learned step sizes make the post-update
    policy very sensitive to the meta-parameters. (The loss value is not a criterion: the
    DiCE score term has value 0 whatever the parameters, so it cannot show progress.)"""
    max_backtracks: int = 5
    """Halvings of a rejected outer step before it is undone (with ``max_post_clip_frac``)."""

    def __post_init__(self):
        check_common(self)
        if not (self.outer_lr > 0 and self.num_outer_steps >= 1 and self.clip_eps > 0):
            raise ValueError('outer_lr and clip_eps must be > 0 and num_outer_steps >= 1')
        if self.kl_coeff < 0 or self.target_kl <= 0 or self.max_grad_norm < 0:
            raise ValueError('kl_coeff and max_grad_norm must be >= 0 and target_kl > 0')
        if not 0 <= self.max_post_clip_frac <= 1 or self.max_backtracks < 0:
            raise ValueError('max_post_clip_frac must be in [0, 1] (0: no guard) and '
                             'max_backtracks >= 0')


class ProMPLearner(MetaLearner):
    """
    Proximal Meta-Policy Search.

    Per iteration, ``num_outer_steps`` Adam steps on
    ``-mean_tasks J^CLIP(theta'(theta)) + eta KL(pi_theta_old || pi_theta)`` where
    ``theta' = theta + alpha grad J^LVC(theta)`` on the pre-update episodes.
    """

    algorithm = 'promp'

    def __init__(self, policy, params, inner, config=None):
        """See :class:`MetaLearner`; ``config`` defaults to ``ProMPConfig()``."""
        super().__init__(policy, params, inner, config or ProMPConfig())
        self.kl_coeff = float(self.config.kl_coeff)
        self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=self.config.outer_lr)

    def meta_loss(self, pre_episodes, post_episodes, old_params=None, prepared=None):
        """
        Return ``(loss, info)``: the scalar outer loss at the current meta-parameters.

        ``old_params`` are the meta-parameters at the start of the iteration (the KL anchor);
        by default the current ones, where the KL term is zero with zero gradient.
        """
        steps = as_steps(pre_episodes)
        if prepared is None:
            prepared = self._prepare(steps, post_episodes)
        pre_adv, post_adv, post_scale = prepared
        post = post_episodes
        params_b, pre_logps = self.adapt_with_graph(steps, pre_adv, importance_weighted=True)
        logp_post = self.policy.batched_log_prob(params_b, post.observations, post.actions)
        j_clip = clip_surrogate(logp_post, post.log_probs, post_adv, post.mask,
                                self.config.clip_eps)  # (B,)
        objective = j_clip
        if pre_logps is not None:
            objective = objective + self.score_term(steps, pre_logps, post, post_scale)
        if old_params is None:
            old_params = {k: v.detach() for k, v in self.params.items()}
        first = steps[0]
        kl = masked_mean(self.policy.kl(old_params, self.params, first.observations),
                         first.mask)  # (B,)
        loss = -objective.mean() + self.kl_coeff * kl.mean()
        ratio = torch.exp(logp_post - post.log_probs).detach()
        clipped = ((ratio - 1.0).abs() > self.config.clip_eps).to(ratio.dtype)
        info = {'surrogate': float(j_clip.detach().mean()), 'kl_pre': float(kl.detach().mean()),
                'clip_frac': float((clipped * post.mask).sum() / post.mask.sum().clamp(min=1))}
        return loss, info

    def _prepare(self, steps, post):
        pre_adv = [self.pre_advantages(e) for e in steps]
        post_adv, post_scale = self.post_advantages(post)
        return pre_adv, post_adv, post_scale

    def meta_step(self, pre_episodes, post_episodes):
        """Run one ProMP iteration on (B, N, T) pre/post episodes; returns stats (floats)."""
        steps = as_steps(pre_episodes)
        prepared = self._prepare(steps, post_episodes)
        old_params = {k: v.detach().clone() for k, v in self.params.items()}
        guard = self.config.max_post_clip_frac > 0
        stats, taken, backtracks = {}, 0, 0
        loss, info = self.meta_loss(steps, post_episodes, old_params, prepared)
        for k in range(self.config.num_outer_steps):
            self.optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                self.meta_parameters(),
                self.config.max_grad_norm if self.config.max_grad_norm > 0 else math.inf)
            if not torch.isfinite(grad_norm):
                if guard and k > 0:   # keep the steps taken so far
                    break
                raise FloatingPointError('ProMP meta-gradient is NaN/inf; lower outer_lr or the '
                                         'inner lr, or check the episodes for bad rewards')
            if k == 0:
                stats.update(loss_first=float(loss.detach()), grad_norm=float(grad_norm),
                             surrogate_first=info['surrogate'])
            if not guard:
                self.optimizer.step()
                taken += 1
                if k + 1 < self.config.num_outer_steps:
                    loss, info = self.meta_loss(steps, post_episodes, old_params, prepared)
                continue
            result = self._guarded_step(steps, post_episodes, old_params, prepared)
            backtracks += result[2]
            if result[0] is None:     # rejected: parameters are back where they were
                break
            loss, info = result[0], result[1]
            taken += 1
        stats.update(loss_last=float(loss.detach()), surrogate_last=info['surrogate'],
                     kl_pre=info['kl_pre'], clip_frac=info['clip_frac'])
        if guard:
            stats.update(outer_steps_taken=float(taken), outer_backtracks=float(backtracks))
        self._update_kl_coeff(info['kl_pre'])
        stats.update(kl_coeff=self.kl_coeff, **task_stats(steps, post_episodes))
        self.iteration += 1
        return stats

    def _guarded_step(self, steps, post, old_params, prepared):
        """Adam step, then halve it back until the post-update policy is within the budget."""
        params = self.meta_parameters()
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        after = [p.detach().clone() for p in params]
        limit = self.config.max_post_clip_frac
        for j in range(self.config.max_backtracks + 1):
            if j > 0:
                with torch.no_grad():
                    for p, b, a in zip(params, before, after):
                        p.copy_(b + (a - b) * 0.5 ** j)
            new_loss, new_info = self.meta_loss(steps, post, old_params, prepared)
            if math.isfinite(float(new_loss.detach())) and new_info['clip_frac'] <= limit:
                return new_loss, new_info, j
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        return None, None, self.config.max_backtracks + 1

    def _update_kl_coeff(self, kl):
        if not self.config.adaptive_kl:
            return
        if kl < self.config.target_kl / 1.5:
            self.kl_coeff /= 2.0
        elif kl > self.config.target_kl * 1.5:
            self.kl_coeff *= 2.0

    # ----------------------------------------------------------------------------------- state
    def extra_state(self):
        """Return the KL weight and Adam's hyper-parameters (JSON)."""
        groups = self.optimizer.state_dict()['param_groups']
        return {'kl_coeff': self.kl_coeff, 'optimizer_param_groups': groups}

    def load_extra_state(self, extra):
        """Restore the KL weight and Adam's hyper-parameters."""
        self.kl_coeff = float(extra['kl_coeff'])
        self._groups = extra['optimizer_param_groups']
        self._load_optimizer()

    def extra_tensors(self):
        """Return Adam's moments and step counts as ``optim.<index>.<key>`` tensors."""
        out = {}
        for idx, st in self.optimizer.state_dict()['state'].items():
            for key, value in st.items():
                out[f'optim.{idx}.{key}'] = torch.as_tensor(value).detach().cpu().clone()
        return out

    def load_extra_tensors(self, tensors):
        """Keep Adam's tensors until the param groups arrive (``load_extra_state``)."""
        self._optim_tensors = {k: v for k, v in tensors.items() if k.startswith('optim.')}

    def _load_optimizer(self):
        state = {}
        for name, value in self._optim_tensors.items():
            _, idx, key = name.split('.', 2)
            state.setdefault(int(idx), {})[key] = value
        groups = [dict(g, betas=tuple(g['betas'])) for g in self._groups]
        self.optimizer.load_state_dict({'state': state, 'param_groups': groups})


class FOMAMLLearner(ProMPLearner):
    """First-order MAML: one Adam step on the post-update gradient applied to the meta-params."""

    algorithm = 'fomaml'

    def __init__(self, policy, params, inner, config=None):
        """``config`` defaults to one outer step, no KL penalty, ``first_order=True``."""
        config = config or ProMPConfig(num_outer_steps=1, kl_coeff=0.0, first_order=True)
        if not config.first_order:
            raise ValueError('FOMAMLLearner needs config.first_order=True')
        super().__init__(policy, params, inner, config)
