"""State-triggered control: which joint_states produce a command, at a fixed rate (no ROS)."""

from dataclasses import dataclass
import math
from typing import Optional

# What to do with one joint_states message.
ACT = 'act'            # compute and publish a command from it now
PEND = 'pend'          # act once this step's reward arrives (reward_source: topic)
KEEP = 'keep'          # in order but too early for a command: keep it as the latest state
DROP = 'drop'          # out of order or a repeated stamp: do not use it at all


class _Schedule:
    """
    Due times of commands on one clock: at most one per period in the long run.

    A time is on schedule from ``early`` seconds before it is due (a quarter period, plus how
    far the clock may lag); after a command the next is due one period after the previous due
    time, and never less than ``0.75`` periods after the command (so a late command does not
    let the next ones burst). In any window of W seconds that allows at most
    ``W / period + 1 + early / period`` commands.
    """

    def __init__(self, period, lag=0.0):
        self.period = period
        self.early = 0.25 * period + lag
        self.due = None

    def ready(self, t):
        return self.due is None or t >= self.due - self.early

    def commit(self, t):
        nxt = t + 0.75 * self.period
        self.due = nxt if self.due is None else max(self.due + self.period, nxt)

    def reset(self):
        self.due = None


@dataclass
class TriggerStats:
    """Counts of what the trigger did with the states it saw (reported in /diagnostics)."""

    states: int = 0
    commands: int = 0
    out_of_order: int = 0
    duplicate_stamps: int = 0
    decimated: int = 0
    resyncs: int = 0


class StateTrigger:
    """
    Decide which states trigger a command so that the command rate stays at one per period.

    Every decision is judged on two clocks: the message stamps (when present) and ``now``, a
    clock the caller guarantees to be monotonic (``time.monotonic()``, or sim time). Neither a
    stamp pattern (backwards, jittered, repeated, far in the future, zero) nor a burst of
    messages can raise the rate above the control rate, because the monotonic schedule alone
    already bounds it. Stamps add ordering: a state stamped before (or at) the newest stamp seen
    is dropped and counted. If no state was in order for ``resync_after`` seconds of ``now``
    (a robot clock reset, or a stamp far in the future poisoned the order), the stamp order
    starts again from the next state.
    """

    def __init__(self, period: float, resync_after: float, clock_lag: float = 0.0):
        """
        Start with an empty schedule.

        :param period: control period, s.
        :param resync_after: s without an in-order state before a new stamp base is trusted.
        :param clock_lag: s the monotonic clock may lag the state it is read with. A
            ``use_sim_time`` node's clock comes from ``/clock``, which the executor may take
            after the same tick's joint_states: ``now`` is then one period behind, and without
            this allowance that state would be decimated (a lost episode step).
        """
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f'control period must be a finite number > 0, got {period!r}')
        if not (math.isfinite(clock_lag) and 0 <= clock_lag <= period):
            raise ValueError(f'clock_lag must lie in [0, period = {period}], got {clock_lag!r}')
        self.period = float(period)
        self.resync_after = float(resync_after)
        self.stats = TriggerStats()
        self._clock = _Schedule(self.period, lag=float(clock_lag))
        self._stamps = _Schedule(self.period)
        self._newest_stamp = None       # newest stamp seen (order)
        self._in_order_at = None        # ``now`` of the last state that was in order
        self._pending = False
        self._last_command = -math.inf

    def on_state(self, stamp: Optional[float], now: float, reward_ready: bool = True) -> str:
        """
        Classify one state: ACT, PEND (wait for this step's reward), KEEP or DROP.

        :param stamp: header stamp in seconds; None or 0 for an unstamped message.
        :param now: the monotonic clock, s.
        :param reward_ready: False when the command must wait for this step's reward.
        """
        self.stats.states += 1
        stamp = stamp if stamp and math.isfinite(stamp) else None
        if stamp is not None and not self._in_order(stamp, now):
            return DROP
        self._in_order_at = now
        if not (self._clock.ready(now) and (stamp is None or self._stamps.ready(stamp))):
            self.stats.decimated += 1
            return KEEP
        self._clock.commit(now)
        if stamp is not None:
            self._stamps.commit(stamp)
        if not reward_ready:
            self._pending = True
            return PEND
        self._note_command(now)
        return ACT

    def _in_order(self, stamp, now):
        newest = self._newest_stamp
        if newest is not None and stamp <= newest:
            stale = self._in_order_at is None or now - self._in_order_at > self.resync_after
            if not stale:
                if stamp == newest:
                    self.stats.duplicate_stamps += 1
                else:
                    self.stats.out_of_order += 1
                return False
            self.stats.resyncs += 1
            self._stamps.reset()
        self._newest_stamp = stamp
        return True

    def on_reward(self, now: float) -> bool:
        """Return True when a pending state should now produce its command."""
        if not self._pending:
            return False
        self._note_command(now)
        return True

    def standby_due(self, now: float) -> bool:
        """Return True when no command went out for 1.5 periods (the stand-by timer acts)."""
        return now - self._last_command > 1.5 * self.period

    def on_command(self, now: float):
        """Record a command sent by someone else (the stand-by timer) so the rate holds."""
        self._clock.commit(now)
        self._note_command(now)

    def _note_command(self, now):
        self._pending = False
        self._last_command = now
        self.stats.commands += 1

    def restart(self):
        """Forget the schedule and the stamp order (activate after an inactive spell)."""
        self._clock.reset()
        self._stamps.reset()
        self._newest_stamp = self._in_order_at = None
        self._pending = False
        self._last_command = -math.inf
