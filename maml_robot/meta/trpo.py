"""MAML-TRPO (Finn et al. 2017): natural meta-gradient step with a KL trust region."""

from dataclasses import dataclass

from maml_robot.meta.learner import as_steps, check_common, MetaLearner, task_stats
from maml_robot.meta.losses import masked_mean, ratio_surrogate
import torch


@dataclass
class TRPOConfig:
    """Settings of the MAML-TRPO outer loop."""

    max_kl: float = 0.01
    """Trust region: mean KL between the old and new post-update policies."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for ``F^-1 g``."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector product."""
    ls_backtrack: float = 0.8
    """Line-search step shrink factor."""
    ls_max_steps: int = 15
    """Line-search trials before the step is rejected."""
    estimator: str = 'lvc'
    """Meta-gradient estimator: 'lvc' (ProMP), 'dice' (unbiased) or 'naive' (MAML code)."""
    first_order: bool = False
    """First-order MAML: no gradient through the inner step's gradient."""
    post_baseline: str = 'linear'
    """Baseline of the post-update advantages: 'linear' or 'none'."""
    normalize_post_advantages: bool = True
    """Standardize post-update advantages per task."""

    def __post_init__(self):
        check_common(self)
        if not (self.max_kl > 0 and self.cg_iters >= 1 and 0 < self.ls_backtrack < 1
                and self.ls_max_steps >= 1 and self.cg_damping >= 0):
            raise ValueError('TRPOConfig: need max_kl > 0, cg_iters >= 1, 0 < ls_backtrack < 1, '
                             'ls_max_steps >= 1, cg_damping >= 0')


def conjugate_gradient(mvp, b, iters, tol=1e-10):
    """Solve ``A x = b`` for symmetric positive definite ``A`` given ``mvp(v) = A v``."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        ap = mvp(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        if rr_new < tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


class TRPOLearner(MetaLearner):
    """
    MAML with a TRPO outer step.

    Maximize ``L(theta) = mean_tasks mean(pi_theta' / pi_theta'_old * A')`` subject to
    ``KL(pi_theta'_old || pi_theta') <= max_kl`` on the post-update observations, where
    ``theta' = theta + alpha grad J_inner(theta)``: conjugate gradient on the Fisher-vector
    product (differentiated through the inner step), then a backtracking line search.
    """

    algorithm = 'trpo'

    def __init__(self, policy, params, inner, config=None):
        """See :class:`MetaLearner`; ``config`` defaults to ``TRPOConfig()``."""
        super().__init__(policy, params, inner, config or TRPOConfig())

    def _objective(self, steps, post, prepared, old_post):
        pre_adv, post_adv, post_scale = prepared
        params_b, pre_logps = self.adapt_with_graph(steps, pre_adv)
        logp_post = self.policy.batched_log_prob(params_b, post.observations, post.actions)
        objective = ratio_surrogate(logp_post, post.log_probs, post_adv, post.mask)  # (B,)
        if pre_logps is not None:
            objective = objective + self.score_term(steps, pre_logps, post, post_scale)
        kl = torch.func.vmap(self.policy.kl)(old_post, params_b, post.observations)  # (B, N, T)
        return objective.mean(), masked_mean(kl, post.mask).mean()

    def meta_loss(self, pre_episodes, post_episodes):
        """Return ``(loss, info)``: minus the surrogate at the current meta-parameters."""
        steps = as_steps(pre_episodes)
        prepared = self._prepare(steps, post_episodes)
        old_post = self._old_post(steps, post_episodes)
        objective, kl = self._objective(steps, post_episodes, prepared, old_post)
        return -objective, {'kl_post': float(kl.detach())}

    def _prepare(self, steps, post):
        pre_adv = [self.pre_advantages(e) for e in steps]
        post_adv, post_scale = self.post_advantages(post)
        return pre_adv, post_adv, post_scale

    def _old_post(self, steps, post):
        return self.adapt(steps)  # adapted params at the start of the iteration (no graph)

    def meta_step(self, pre_episodes, post_episodes):
        """Run one MAML-TRPO iteration on (B, N, T) pre/post episodes; returns stats."""
        steps = as_steps(pre_episodes)
        post = post_episodes
        prepared = self._prepare(steps, post)
        old_post = self._old_post(steps, post)
        meta_params = self.meta_parameters()
        objective, kl = self._objective(steps, post, prepared, old_post)
        grad = _flat(torch.autograd.grad(objective, meta_params, retain_graph=True))
        grad_kl = _flat(torch.autograd.grad(kl, meta_params, create_graph=True))

        def fisher_vp(v):
            hv = torch.autograd.grad(grad_kl @ v, meta_params, retain_graph=True)
            return _flat(hv) + self.config.cg_damping * v

        step_dir = conjugate_gradient(fisher_vp, grad, self.config.cg_iters)
        shs = 0.5 * (step_dir @ fisher_vp(step_dir))
        stats = {'surrogate_before': float(objective.detach()), 'grad_norm': float(grad.norm())}
        accepted, frac, kl_new, obj_new = False, 0.0, 0.0, float(objective.detach())
        if torch.isfinite(shs) and shs > 0:
            full_step = step_dir * torch.sqrt(self.config.max_kl / shs)
            old = _flat([p.detach() for p in meta_params])
            for k in range(self.config.ls_max_steps):
                frac = self.config.ls_backtrack ** k
                self._set_flat(old + frac * full_step)
                with torch.no_grad():
                    obj_try, kl_try = self._objective(steps, post, prepared, old_post)
                if (torch.isfinite(obj_try) and obj_try > objective
                        and kl_try <= self.config.max_kl):
                    accepted, kl_new, obj_new = True, float(kl_try), float(obj_try)
                    break
            if not accepted:
                self._set_flat(old)
        stats.update(accepted=float(accepted), step_frac=frac if accepted else 0.0,
                     kl_post=kl_new, surrogate_after=obj_new, **task_stats(steps, post))
        self.iteration += 1
        return stats

    def _set_flat(self, flat):
        with torch.no_grad():
            offset = 0
            for p in self.meta_parameters():
                n = p.numel()
                p.copy_(flat[offset:offset + n].view_as(p))
                offset += n
