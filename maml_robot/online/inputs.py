"""Plausibility of measured joint states: positions far outside the joint limits are refused."""

import numpy as np

POSITION_MARGIN = 1.0
"""Slack beyond a joint's limits (rad, or m for prismatic joints), plus a quarter of its range:
calibration offsets, noise and soft limits stay well inside it, a broken encoder does not."""
CONTINUOUS_BOUND = 1e4
"""Largest plausible |position| of a continuous joint (no limits): about 1600 turns."""


def position_bounds(limits) -> np.ndarray:
    """Return (J, 2) plausible lower, upper positions for (J, 2) joint limits (±inf ok)."""
    limits = np.asarray(limits, dtype=np.float64)
    lower, upper = limits[:, 0], limits[:, 1]
    finite = np.isfinite(lower) & np.isfinite(upper)
    span = np.where(finite, upper - lower, 0.0)
    margin = POSITION_MARGIN + 0.25 * span
    lo = np.where(finite, lower - margin, -CONTINUOUS_BOUND)
    hi = np.where(finite, upper + margin, CONTINUOUS_BOUND)
    return np.stack([lo, hi], axis=1)


def check_joint_positions(position, joint_names, bounds) -> None:
    """
    Raise ValueError naming the first joint whose position is outside ``bounds``.

    NaN passes here: the adapter holds on any non-finite observation and counts it.
    :param position: (J,) measured positions in ``joint_names`` order.
    :param bounds: (J, 2) from :func:`position_bounds`, or None to skip the check.
    """
    if bounds is None:
        return
    position = np.asarray(position, dtype=np.float64)
    outside = (position < bounds[:, 0]) | (position > bounds[:, 1])
    if np.any(outside):
        j = int(np.flatnonzero(outside)[0])
        raise ValueError(f'joint {joint_names[j]!r} position {position[j]:.6g} is outside the '
                         f'plausible range [{bounds[j, 0]:.6g}, {bounds[j, 1]:.6g}] (joint '
                         'limits plus margin); check the encoder, its calibration and units')
