"""Linear feature baseline (Duan et al. 2016, used by MAML): ridge regression per task."""

from maml_robot.meta.returns import discounted_returns
import torch


def baseline_features(obs, horizon_scale=None):
    """
    Return the features ``[o, o^2, t/T, (t/T)^2, (t/T)^3, 1]``.

    :param obs: (..., N, T, obs_dim) observations (normalized ones condition the fit best).
    :param horizon_scale: T in ``t/T``; defaults to the padded length.
    :returns: (..., N, T, 2 * obs_dim + 4).
    """
    horizon = obs.shape[-2]
    scale = float(horizon if horizon_scale is None else horizon_scale)
    o = obs.clamp(-10.0, 10.0)
    t = (torch.arange(horizon, dtype=obs.dtype, device=obs.device) / scale)[:, None]  # (T, 1)
    t = t.expand(obs.shape[:-1] + (1,))
    return torch.cat([o, o ** 2, t, t ** 2, t ** 3, torch.ones_like(t)], dim=-1)


def fit_linear_baseline(features, targets, mask, reg_coeff=1e-5):
    """
    Fit ``V = features @ w`` by regularized least squares on the valid steps of each task.

    Solves ``(X^T M X + reg I) w = X^T M y`` in float64 (``reg`` scaled by the mean diagonal),
    batched over any leading dims before (N, T) and safe under ``torch.func.vmap``.

    :param features: (..., N, T, F). :param targets: (..., N, T) returns. :param mask: (..., N, T).
    :returns: (..., N, T) fitted values, detached, in the dtype of ``targets``.
    """
    x = features.detach().to(torch.float64)
    x = x.reshape(x.shape[:-3] + (-1, x.shape[-1]))  # (..., N*T, F)
    m = mask.detach().to(torch.float64).reshape(x.shape[:-1] + (1,))  # (..., N*T, 1)
    y = targets.detach().to(torch.float64).reshape(x.shape[:-1] + (1,))
    xm = x * m
    gram = xm.transpose(-1, -2) @ x  # (..., F, F)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    scale = torch.diagonal(gram, dim1=-2, dim2=-1).mean(-1)[..., None, None] + 1.0
    w = torch.linalg.solve(gram + reg_coeff * scale * eye, xm.transpose(-1, -2) @ y)  # (.., F, 1)
    values = (features.detach().to(torch.float64) @ w[..., None, :, :]).squeeze(-1)  # (..., N, T)
    return values.to(targets.dtype) * mask


def linear_baseline_values(obs_normalized, rewards, mask, gamma, reg_coeff=1e-5):
    """Fit the baseline to the discounted returns and return its values (..., N, T)."""
    returns = discounted_returns(rewards, mask, gamma)
    return fit_linear_baseline(baseline_features(obs_normalized), returns, mask, reg_coeff)
