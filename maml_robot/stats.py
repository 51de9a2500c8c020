"""
Statistics of adaptation results: bootstrap CIs, normalized score, negative-adaptation rate.

Every array here is laid out ``(S, M, ...)``: ``S`` seeds (independent runs) by ``M`` tasks, with
optional trailing axes (e.g. adaptation steps) that are treated independently. Seeds and tasks
are *crossed* (every seed is evaluated on the same fixed tasks), so the bootstrap resamples the
two axes independently (a two-way bootstrap): one draw picks ``S`` seeds with replacement and
``M`` tasks with replacement and averages the ``S x M`` grid they select. That captures both the
variance from training/evaluation seeds and from which tasks happened to be in the split. It is
vectorized through multinomial counts: the mean of the selected grid is
``counts_S @ values @ counts_M / (S * M)``.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_BOOTSTRAP = 2000
"""Number of bootstrap resamples used unless told otherwise."""

DEFAULT_CONFIDENCE = 0.95
"""Two-sided confidence level of the reported intervals."""

DEFAULT_NOISE_Z = 2.0
"""Negative adaptation needs a drop larger than this many standard errors of the difference."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap confidence interval (arrays broadcast alike)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _check_grid(values, name):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2:
        raise ValueError(f'{name} must have shape (seeds, tasks, ...); got shape {values.shape}')
    if values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f'{name} needs at least one seed and one task; got shape {values.shape}')
    if not np.all(np.isfinite(values)):
        raise ValueError(f'{name} contains non-finite values; every return must be finite')
    return values


def resample_counts(n_seeds, n_tasks, n_boot, rng):
    """
    Return multinomial resampling counts for the seed and the task axis.

    :param n_seeds: number of seeds ``S``.
    :param n_tasks: number of tasks ``M``.
    :param n_boot: number of bootstrap draws ``B``.
    :param rng: a ``numpy.random.Generator``.
    :returns: ``(seed_counts (B, S), task_counts (B, M))``; each row sums to ``S`` resp. ``M``.
    """
    if n_boot < 1:
        raise ValueError(f'n_boot must be >= 1; got {n_boot}')
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot)
    task_counts = rng.multinomial(n_tasks, np.full(n_tasks, 1.0 / n_tasks), size=n_boot)
    return seed_counts.astype(np.float64), task_counts.astype(np.float64)


def resampled_means(values, seed_counts, task_counts):
    """Return the grid mean of ``values (S, M, ...)`` for each draw: shape ``(B, ...)``."""
    n_seeds, n_tasks = values.shape[:2]
    flat = values.reshape(n_seeds, n_tasks, -1)                       # (S, M, F)
    means = np.einsum('bs,smf,bm->bf', seed_counts, flat, task_counts, optimize=True)
    means /= n_seeds * n_tasks                                        # (B, F)
    return means.reshape((seed_counts.shape[0],) + values.shape[2:])


def _percentiles(draws, confidence):
    if not 0.0 < confidence < 1.0:
        raise ValueError(f'confidence must be in (0, 1); got {confidence}')
    alpha = 0.5 * (1.0 - confidence)
    low, high = np.nanquantile(draws, [alpha, 1.0 - alpha], axis=0)
    return low, high


def bootstrap_ci(values, *, rng, n_boot=DEFAULT_BOOTSTRAP, confidence=DEFAULT_CONFIDENCE):
    """
    Return the mean over seeds and tasks of ``values (S, M, ...)`` with a percentile CI.

    :param values: finite numbers, shape ``(S, M)`` or ``(S, M, K)`` (e.g. one column per
        adaptation step); trailing axes get one interval each.
    :param rng: a ``numpy.random.Generator`` (results are reproducible for a fixed seed).
    :param n_boot: number of two-way bootstrap draws.
    :param confidence: two-sided level of the interval.
    :returns: an :class:`Interval` with arrays of shape ``values.shape[2:]``.
    """
    values = _check_grid(values, 'values')
    seed_counts, task_counts = resample_counts(values.shape[0], values.shape[1], n_boot, rng)
    draws = resampled_means(values, seed_counts, task_counts)        # (B, ...)
    low, high = _percentiles(draws, confidence)
    return Interval(values.mean(axis=(0, 1)), low, high)


def normalized_score(returns, random_returns, oracle_returns, *, min_gap=1e-8):
    """
    Return ``(R - R_random) / (R_oracle - R_random)``, elementwise with broadcasting.

    Where ``|R_oracle - R_random| <= min_gap`` the score is undefined (the oracle is no better
    than acting at random, so the task says nothing about adaptation) and NaN is returned there,
    never ``inf``. A negative gap (oracle worse than random) is returned as computed: it means the
    oracle is broken and the report shows it.
    """
    returns = np.asarray(returns, dtype=np.float64)
    gap = np.asarray(oracle_returns, dtype=np.float64) - np.asarray(random_returns, np.float64)
    ok = np.abs(gap) > min_gap
    safe_gap = np.where(ok, gap, 1.0)
    score = (returns - np.asarray(random_returns, dtype=np.float64)) / safe_gap
    return np.where(ok, score, np.nan)


def bootstrap_normalized(values, random_returns, oracle_returns, *, rng,
                         n_boot=DEFAULT_BOOTSTRAP, confidence=DEFAULT_CONFIDENCE, min_gap=1e-8):
    """
    Return the normalized score of the mean return, with a two-way bootstrap CI.

    The score is a ratio of means over the same tasks,
    ``(mean R - mean R_random) / (mean R_oracle - mean R_random)``, which stays stable when a
    single task has a tiny oracle-random gap (normalizing task by task would blow up there).
    Each bootstrap draw resamples seeds and tasks and recomputes numerator and denominator on the
    same resampled tasks.

    :param values: returns ``(S, M, ...)``.
    :param random_returns: per-task return of the random policy, shape ``(M,)``.
    :param oracle_returns: per-task return of the oracle, shape ``(M,)``.
    :returns: an :class:`Interval` of shape ``values.shape[2:]``; NaN where the gap is degenerate.
    """
    values = _check_grid(values, 'values')
    n_seeds, n_tasks = values.shape[:2]
    rand = np.asarray(random_returns, dtype=np.float64)
    oracle = np.asarray(oracle_returns, dtype=np.float64)
    for name, ref in (('random_returns', rand), ('oracle_returns', oracle)):
        if ref.shape != (n_tasks,) or not np.all(np.isfinite(ref)):
            raise ValueError(f'{name} must be {n_tasks} finite per-task returns; got {ref.shape}')
    extra = (1,) * (values.ndim - 2)
    centred = values - rand.reshape((1, n_tasks) + extra)             # (S, M, ...)
    gap = oracle - rand                                               # (M,)
    point = normalized_score(centred.mean(axis=(0, 1)), 0.0, gap.mean(), min_gap=min_gap)
    seed_counts, task_counts = resample_counts(n_seeds, n_tasks, n_boot, rng)
    num = resampled_means(centred, seed_counts, task_counts)          # (B, ...)
    den = task_counts @ gap / n_tasks                                 # (B,)
    draws = normalized_score(num, 0.0, den.reshape((-1,) + extra), min_gap=min_gap)
    if np.all(np.isnan(draws)):
        nan = np.full(values.shape[2:], np.nan)
        return Interval(point, nan, nan)
    low, high = _percentiles(draws, confidence)
    return Interval(point, low, high)


def noise_margin(std_before, std_after, n_before, n_after, *, z=DEFAULT_NOISE_Z):
    """
    Return ``z`` standard errors of the difference of two mean returns (Welch).

    ``std_*`` are the standard deviations of the per-rollout returns and ``n_*`` the number of
    rollouts behind each mean; broadcasts elementwise.
    """
    if np.any(np.asarray(n_before) < 1) or np.any(np.asarray(n_after) < 1):
        raise ValueError('noise_margin needs at least one rollout on each side')
    var = np.square(std_before) / n_before + np.square(std_after) / n_after
    return z * np.sqrt(var)


def negative_adaptation(before, after, margin):
    """
    Return a boolean array: True where ``after < before - margin`` (adaptation made it worse).

    :param before: return at step 0, any shape.
    :param after: return after K adaptation steps, same shape.
    :param margin: non-negative noise margin (scalar or broadcastable array).
    """
    margin = np.asarray(margin, dtype=np.float64)
    if np.any(margin < 0) or not np.all(np.isfinite(margin)):
        raise ValueError(f'the noise margin must be finite and >= 0; got {margin}')
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    if before.shape != after.shape:
        raise ValueError(f'before {before.shape} and after {after.shape} must have one shape')
    return after < before - margin


def negative_adaptation_rate(before, after, margin, *, rng, n_boot=DEFAULT_BOOTSTRAP,
                             confidence=DEFAULT_CONFIDENCE):
    """
    Return the share of (seed, task) pairs that adapted negatively, with a bootstrap CI.

    :param before: returns at step 0, shape ``(S, M)``.
    :param after: returns after K steps, shape ``(S, M)``.
    :param margin: noise margin, scalar or ``(S, M)``; see :func:`noise_margin`.
    """
    worse = negative_adaptation(before, after, margin).astype(np.float64)
    return bootstrap_ci(worse, rng=rng, n_boot=n_boot, confidence=confidence)
