"""Issue 18.1: the state-triggered command rate stays fixed under any stamp pattern."""

import math

from fault_nodes import fresh_checkpoint, InProcessAdapter
from maml_robot.online.trigger import ACT, DROP, KEEP, PEND, StateTrigger
import numpy as np
import pytest

PERIOD = 0.04             # a 25 Hz controller
STATE_HZ = 1000           # fed with 1 kHz joint_states


def stamps(pattern, n, rng):
    """Return n header times (s; None = unstamped) of one second of a 1 kHz stream."""
    t = 100.0 + np.arange(n) / STATE_HZ
    if pattern == 'backwards':
        return list(1000.0 - np.arange(n) / STATE_HZ)
    if pattern == 'jitter':
        return list(t + rng.uniform(-0.01, 0.01, n))
    if pattern == 'duplicated':
        return list(np.repeat(t[::2], 2))
    if pattern == 'future':
        out = list(t)
        out[10] = 1e9
        return out
    if pattern == 'zero':
        return [0.0] * n
    if pattern == 'unstamped':
        return [None] * n
    if pattern == 'frozen':
        return [123.0] * n
    return list(t)          # 'wall': stamps that follow the clock


PATTERNS = ('wall', 'backwards', 'jitter', 'duplicated', 'future', 'zero', 'unstamped',
            'frozen')


def trigger_rate(pattern, seconds=2.0, clock_lag=0.0):
    """Commands per second of a StateTrigger fed one 1 kHz pattern (stand-by timer included)."""
    trigger = StateTrigger(PERIOD, resync_after=0.1, clock_lag=clock_lag)
    n = int(seconds * STATE_HZ)
    now = 50.0
    for i, stamp in enumerate(stamps(pattern, n, np.random.default_rng(0))):
        now = 50.0 + i / STATE_HZ
        trigger.on_state(stamp, now)
        if trigger.standby_due(now) and i % int(PERIOD * STATE_HZ) == 0:
            trigger.on_command(now)
    return trigger.stats.commands / seconds, trigger.stats


@pytest.mark.parametrize('pattern', PATTERNS)
def test_trigger_rate_is_fixed_under_any_stamp_pattern(pattern):
    rate, stats = trigger_rate(pattern)
    assert rate <= 1.0 / PERIOD + 1.0, f'{rate:.1f} commands/s with {pattern} stamps'
    if pattern in ('wall', 'zero', 'unstamped', 'duplicated', 'jitter'):
        assert rate >= 0.8 / PERIOD, f'{rate:.1f} commands/s with {pattern} stamps'
    if pattern in ('backwards', 'jitter', 'future'):
        assert stats.out_of_order > 0
    if pattern in ('duplicated', 'frozen'):
        assert stats.duplicate_stamps > 0


@pytest.mark.parametrize('pattern', PATTERNS)
def test_trigger_rate_stays_bounded_with_a_sim_time_clock_allowance(pattern):
    """clock_lag = one period (use_sim_time) adds at most one command to any window."""
    rate, _ = trigger_rate(pattern, clock_lag=PERIOD)
    assert rate <= 1.0 / PERIOD + 1.0, f'{rate:.1f} commands/s with {pattern} stamps'


@pytest.mark.parametrize('clock_lag, decimated', [(0.0, True), (PERIOD, False)])
def test_sim_time_states_read_before_their_clock_tick_all_act(clock_lag, decimated):
    """
    Under use_sim_time every state of a sim stream acts, its clock tick read or not yet.

    The node clock comes from /clock, taken before or after the same
    tick's joint_states: ``now`` is the state's stamp or one period behind it. Every state of
    such a stream is one sim step and must act (the demo lost up to 19 of 50 steps per
    episode to decimation); without the allowance some are decimated.
    """
    trigger = StateTrigger(PERIOD, resync_after=0.1, clock_lag=clock_lag)
    rng = np.random.default_rng(3)
    steps = 500
    for k in range(1, steps + 1):
        stamp = 10.0 + k * PERIOD
        now = stamp - PERIOD * rng.integers(0, 2)       # the clock tick read or not yet
        trigger.on_state(stamp, now)
    assert (trigger.stats.decimated > 0) == decimated
    if not decimated:
        assert trigger.stats.commands == steps


def test_trigger_decisions():
    trigger = StateTrigger(PERIOD, resync_after=0.1)
    assert trigger.on_state(10.0, 1.0) == ACT
    assert trigger.on_state(10.01, 1.01) == KEEP            # decimated: kept as latest state
    assert trigger.on_state(10.005, 1.02) == DROP           # older than the newest stamp
    assert trigger.on_state(10.01, 1.02) == DROP            # a repeated stamp
    assert trigger.on_state(10.04, 1.04, reward_ready=False) == PEND
    assert trigger.on_reward(1.041) and not trigger.on_reward(1.042)
    assert trigger.on_state(5.0, 1.5) == ACT                # no state in order for 0.1 s
    assert trigger.stats.resyncs == 1 and trigger.stats.out_of_order == 1
    assert trigger.stats.duplicate_stamps == 1
    with pytest.raises(ValueError, match='control period'):
        StateTrigger(math.nan, 0.1)
    with pytest.raises(ValueError, match='clock_lag'):
        StateTrigger(PERIOD, 0.1, clock_lag=2 * PERIOD)


@pytest.mark.parametrize('pattern', ['backwards', 'jitter', 'wall', 'future'])
def test_node_command_rate_under_bad_stamps(tmp_path, pattern):
    """The node, fed 1 s of 1 kHz states, sends at most the control rate (25 Hz)."""
    adapter = InProcessAdapter(fresh_checkpoint(tmp_path / 'c.safetensors'),
                               control_rate_hz=1.0 / PERIOD)
    try:
        adapter.start()
        for stamp in stamps(pattern, STATE_HZ, np.random.default_rng(1)):
            adapter.clock[0] += 1.0 / STATE_HZ
            adapter.send(stamp)
        count = len(adapter.commands)
        assert count <= 1.0 / PERIOD + 2, f'{count} commands in 1 s with {pattern} stamps'
        if pattern in ('wall', 'jitter'):
            assert count >= 0.8 / PERIOD
        assert all(np.all(np.isfinite(c)) for c in adapter.commands)
    finally:
        adapter.close()


def test_dropped_states_are_counted_in_diagnostics(tmp_path):
    adapter = InProcessAdapter(fresh_checkpoint(tmp_path / 'c.safetensors'),
                               control_rate_hz=1.0 / PERIOD)
    try:
        adapter.start()
        for stamp in (10.0, 10.04, 10.02, 10.04, 10.08):
            adapter.clock[0] += PERIOD
            adapter.send(stamp)
        published = []
        adapter.node.diag_pub.publish = published.append
        adapter.node._publish_diagnostics()
        values = {kv.key: kv.value for kv in published[0].status[0].values}
        assert values['trigger_out_of_order'] == '1'
        assert values['trigger_duplicate_stamps'] == '1'
        assert values['trigger_commands'] == '3' == str(len(adapter.commands))
    finally:
        adapter.close()
