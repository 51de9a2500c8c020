"""Discounted returns and generalized advantage estimation over padded, masked rollouts."""

import torch


def discount_matrix(horizon, factor, dtype=torch.float32, device=None):
    """Return the (T, T) matrix ``M[t, u] = factor ** (u - t)`` for ``u >= t``, else 0."""
    idx = torch.arange(horizon, device=device)
    power = (idx[None, :] - idx[:, None]).to(dtype)  # (T, T) u - t
    mat = torch.pow(torch.as_tensor(float(factor), dtype=dtype, device=device), power.clamp(min=0))
    return mat * (power >= 0).to(dtype)


def discounted_returns(rewards, mask, gamma):
    """
    Return the reward-to-go ``R_t = sum_{u >= t} gamma^(u-t) r_u`` over valid steps.

    :param rewards: (..., T) rewards.
    :param mask: (..., T) 1 for valid steps (a prefix), 0 after the end.
    :returns: (..., T), zero on padded steps. One matmul, so it is vmap- and GPU-friendly.
    """
    mat = discount_matrix(rewards.shape[-1], gamma, rewards.dtype, rewards.device)
    return ((rewards * mask) @ mat.T) * mask


def gae_advantages(rewards, values, mask, gamma, gae_lambda):
    """
    Generalized advantage estimation (Schulman et al. 2016).

    ``delta_t = r_t + gamma V_{t+1} m_{t+1} - V_t``; ``A_t = sum_k (gamma lambda)^k delta_{t+k}``.
    The end of a rollout is treated as terminal (no bootstrap). With ``gae_lambda = 1`` this is
    exactly ``discounted_returns - values``.

    :param rewards: (..., T). :param values: (..., T) baseline. :param mask: (..., T).
    :returns: (..., T) advantages, zero on padded steps.
    """
    values = values * mask
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    deltas = (rewards + gamma * next_values - values) * mask
    mat = discount_matrix(rewards.shape[-1], gamma * gae_lambda, rewards.dtype, rewards.device)
    return (deltas @ mat.T) * mask


def discounted_total(rewards, mask, gamma):
    """Return the discounted return from t=0 of each rollout: (..., T) -> (...)."""
    horizon = rewards.shape[-1]
    disc = torch.pow(torch.as_tensor(float(gamma), dtype=rewards.dtype, device=rewards.device),
                     torch.arange(horizon, dtype=rewards.dtype, device=rewards.device))
    return (rewards * mask * disc).sum(-1)
