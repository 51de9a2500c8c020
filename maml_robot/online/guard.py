"""
The online adapter's guards on parameters: finiteness, bounded change, and the verdict.

Pure functions of tensors and return statistics, shared by every adaptation operator: an update
(and each candidate a derivative-free operator tries) moves the parameters by at most
``max_param_delta`` in L2 norm; an adapted policy on probation is accepted, rolled back to the
parameters before it, or reverted to the meta-parameters by :func:`verdict`.
"""

import math

import numpy as np
import torch

ACCEPT, ROLLBACK, REVERT = 'accept', 'rollback', 'revert'
"""Verdicts on an adapted policy after its probation window."""


def finite_params(params) -> bool:
    """Return True when every tensor of ``params`` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in params.values())


def detached(params) -> dict:
    """Return a detached copy of ``params`` (the adapter never shares the caller's tensors)."""
    return {k: v.detach().clone() for k, v in params.items()}


def same_params(a, b) -> bool:
    """Return True when the dicts ``a`` and ``b`` hold equal tensors under the same names."""
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def bounded_change(params, new, max_norm):
    """
    Return ``new`` moved toward ``params`` so that ``|new - params|_2 <= max_norm``, or None.

    The L2 norm runs over all parameters together (float64); a longer step keeps its direction
    and is scaled down to ``max_norm``. None when the step or ``new`` is not finite.
    """
    delta = {k: new[k] - params[k] for k in params}
    norm = float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta.values())))
    if not math.isfinite(norm) or not finite_params(new):
        return None
    if norm > max_norm:
        shrink = max_norm / norm
        new = {k: params[k] + shrink * delta[k] for k in params}
    return new


def sample_stats(returns):
    """Return (mean, variance of the mean) of episode returns (variance 0 for one episode)."""
    n = len(returns)
    var = float(np.var(returns, ddof=1)) / n if n > 1 else 0.0
    return float(np.mean(returns)), var


def worse(judged, reference, margin, z) -> bool:
    """
    Return True when ``judged`` (mean, var) is worse than ``reference`` beyond noise.

    The drop must exceed ``margin`` x |reference mean| and ``z`` standard errors of the
    difference of the two means (Welch); with one episode on each side only the margin counts.
    """
    drop = reference[0] - judged[0]
    return (drop > margin * max(abs(reference[0]), 1e-6)
            and drop > z * math.sqrt(judged[1] + reference[1]))


def verdict(judged, before, meta, config) -> str:
    """
    Return REVERT, ROLLBACK or ACCEPT for an adapted policy after its probation window.

    :param judged: (mean, variance of the mean) of its returns over the window.
    :param before: the same of the parameters it replaced (their returns before the update).
    :param meta: the same of the meta-policy (mean NaN: not measured, no divergence guard).
    :param config: an OnlineConfig (divergence_margin, rollback_margin, rollback_z).
    """
    if math.isfinite(meta[0]) and worse(judged, meta, config.divergence_margin,
                                        config.rollback_z):
        return REVERT
    if worse(judged, before, config.rollback_margin, config.rollback_z):
        return ROLLBACK
    return ACCEPT
