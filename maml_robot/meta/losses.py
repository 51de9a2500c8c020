"""
Surrogate objectives, written over log-prob tensors (any policy, any leading dims).

All surrogates are *objectives* (to maximize) averaged over the valid steps of the last two
dims (N, T): a (..., N, T) input gives a (...) output, e.g. one value per task.
"""

from maml_robot.policy import gaussian_kl
import torch


def masked_mean(x, mask):
    """Mean of ``x`` over the valid entries of the last two dims: (..., N, T) -> (...)."""
    return (x * mask).sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1.0)


def magic_box(x):
    """Return exp(x - stop_grad(x)): value 1, gradient grad x (DiCE, Foerster et al. 2018)."""
    return torch.exp(x - x.detach())


def pg_surrogate(log_probs, advantages, mask):
    """Return the vanilla policy-gradient surrogate ``mean(log pi * A)`` (MAML paper)."""
    return masked_mean(log_probs * advantages.detach(), mask)


def lvc_surrogate(log_probs, advantages, mask, old_log_probs=None):
    """
    Return the low-variance curvature (LVC) objective of ProMP (Rothfuss et al. 2019).

    ``mean(pi / pi_old * A)`` with ``pi_old = stop_grad(pi)`` by default: same gradient as
    ``pg_surrogate``, Hessian ``mean((grad^2 log pi + grad log pi grad log pi^T) A)``. With
    ``old_log_probs`` (the sampling policy) it is importance-weighted, as in ProMP's outer steps.
    """
    old = log_probs.detach() if old_log_probs is None else old_log_probs.detach()
    return masked_mean(torch.exp(log_probs - old) * advantages.detach(), mask)


def ratio_surrogate(log_probs, old_log_probs, advantages, mask):
    """Return the importance-sampled surrogate ``mean(pi / pi_old * A)`` (TRPO)."""
    ratio = torch.exp(log_probs - old_log_probs.detach())
    return masked_mean(ratio * advantages.detach(), mask)


def clip_surrogate(log_probs, old_log_probs, advantages, mask, clip_eps):
    """Return the PPO clipped surrogate ``mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``."""
    ratio = torch.exp(log_probs - old_log_probs.detach())
    adv = advantages.detach()
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    return masked_mean(torch.minimum(ratio * adv, clipped), mask)


def dice_objective(log_probs, rewards, mask, gamma):
    """
    Return the DiCE objective ``mean_n sum_t magic(sum_{u<=t} log pi_u) gamma^t r_t``.

    Its value is the discounted return; its n-th derivative is an unbiased estimator of the n-th
    derivative of the expected discounted return. (..., N, T) -> (...).
    """
    cum = torch.cumsum(log_probs * mask, dim=-1)
    disc = torch.pow(torch.as_tensor(float(gamma), dtype=rewards.dtype, device=rewards.device),
                     torch.arange(rewards.shape[-1], dtype=rewards.dtype, device=rewards.device))
    return (magic_box(cum) * rewards * disc * mask).sum(-1).mean(-1)


def dice_score_term(pre_log_probs, pre_mask, post_value, value_baseline=0.0):
    """
    Return the meta-gradient term through the pre-update sampling distribution.

    ``(magic(sum log pi_theta(tau_pre)) - 1) * (J_post - b)``: value 0, gradient
    ``(J_post - b) grad_theta log P(tau_pre | theta)``. Without it a sampled inner update gives
    a biased meta-gradient (the error several MAML libraries make).

    :param pre_log_probs: (..., N, T) log pi_theta of the pre-update actions (with graph).
    :param pre_mask: (..., N, T).
    :param post_value: (...) estimate of the post-update objective (treated as a constant).
    :param value_baseline: (...) or float, independent of this task's pre-update samples.
    """
    total = (pre_log_probs * pre_mask).sum((-2, -1))
    weight = (post_value - value_baseline)
    if torch.is_tensor(weight):
        weight = weight.detach()
    return (magic_box(total) - 1.0) * weight


def mean_gaussian_kl(mean_p, log_std_p, mean_q, log_std_q, mask):
    """Masked mean over (N, T) of KL(p || q) for diagonal Gaussians: (..., N, T, A) -> (...)."""
    return masked_mean(gaussian_kl(mean_p, log_std_p, mean_q, log_std_q), mask)


def _lvc_is(log_probs, advantages, mask, old_log_probs):
    return lvc_surrogate(log_probs, advantages, mask, old_log_probs)


SURROGATES = {
    'pg': lambda log_probs, advantages, mask, old_log_probs: pg_surrogate(
        log_probs, advantages, mask),
    'lvc': lambda log_probs, advantages, mask, old_log_probs: lvc_surrogate(
        log_probs, advantages, mask),
    'lvc_is': _lvc_is,
}
"""Inner-loop surrogates by name, called as ``f(log_probs, advantages, mask, old_log_probs)``:
'pg' and 'lvc' have the same gradient and different curvature; 'lvc_is' weights by
``pi / pi_old`` where ``pi_old`` is the policy that sampled the episodes (ProMP)."""
