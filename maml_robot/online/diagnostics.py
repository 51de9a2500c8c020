"""What the adapter reports: its /diagnostics status and its log lines (no ROS)."""

import dataclasses
import math
from typing import Optional

import numpy as np

TIMER_ONLY = ('commands', 'decimated')
"""Trigger counters that mean nothing with ``trigger: timer`` (states trigger no command)."""


def adapter_status(adapter, trigger_stats, state_triggered: bool, latencies) -> tuple:
    """
    Return (warn, message, values) of the adapter's diagnostic status.

    :param trigger_stats: the StateTrigger's TriggerStats.
    :param latencies: seconds from joint_states receipt to command publish (the last 500 count).
    :returns: warn: True when holding (e-stop, stale state); values: ``{key: value}``.
    """
    values = dict(adapter.stats)
    values.update({f'trigger_{k}': v for k, v in dataclasses.asdict(trigger_stats).items()
                   if state_triggered or k not in TIMER_ONLY})
    lat = np.asarray(latencies[-500:], dtype=np.float64) * 1e3
    for name, q in (('p50', 50), ('p99', 99), ('max', 100)):
        values[f'latency_{name}_ms'] = float(np.percentile(lat, q)) if lat.size else math.nan
    if adapter.estop:
        return True, 'e-stop engaged', values
    if adapter.frozen:
        return True, 'stale state: holding', values
    return False, 'adapting' if adapter.adapt_enabled else 'adaptation disabled', values


class RepeatGate:
    """
    Decide which log lines to write: a new kind at once, one kind again at most once a period.

    rclpy's ``throttle_duration_sec`` throttles a call site whatever its message, so a new
    reason logged there could wait a whole period unseen; here each kind (a hold reason, an
    input error with its numbers masked) has its own period. The lines of a kind held back are
    counted, and :meth:`check` returns that count with the next line let through, for it to
    say how many it stands for (the online adapter's warnings do).
    """

    MAX_KINDS = 100
    """Kinds remembered before those not let through for a period are forgotten."""

    def __init__(self, period: float = 1.0):
        """:param period: seconds between two lines of the same kind."""
        self.period = float(period)
        self._last = {}          # kind -> (when it was last let through, lines held back since)

    def check(self, kind, now: float) -> Optional[int]:
        """
        Return None to hold back a line of ``kind`` at ``now``, else how many were held back.

        A line let through (an int, 0 for a new kind) notes the time and starts a new count. A
        kind forgotten (over MAX_KINDS kinds, it not let through for a period) is new again, and
        the lines it held back are no longer counted.
        """
        last, held = self._last.get(kind, (-math.inf, 0))
        if now - last < self.period:
            self._last[kind] = (last, held + 1)
            return None
        if len(self._last) > self.MAX_KINDS:   # kinds not seen for a period need no memory
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.period}
        self._last[kind] = (now, 0)
        return held

    def allow(self, kind, now: float) -> bool:
        """Return True (and note the time) when a line of ``kind`` should be logged ``now``."""
        return self.check(kind, now) is not None
