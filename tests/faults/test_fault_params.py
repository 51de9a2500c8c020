"""Issue 18.6: a runtime parameter change is applied, or refused with the reason."""

import re

from fault_nodes import fresh_checkpoint, InProcessAdapter
import pytest
from rclpy.parameter import Parameter


@pytest.fixture
def node(tmp_path):
    adapter = InProcessAdapter(fresh_checkpoint(tmp_path / 'c.safetensors'),
                               control_rate_hz=25.0, adapt=True)
    yield adapter
    adapter.close()


def set_one(node, name, value):
    return node.set_parameters([Parameter(name, value=value)])[0]


@pytest.mark.parametrize('name, value, reason', [
    ('control_rate_hz', 5.0, 'cannot change while the node is configured'),
    ('trigger', 'bogus', "parameter 'trigger'.*one of state, timer"),
    ('trigger', 'timer', 'cannot change while the node is configured'),
    ('checkpoint', '/nonexistent.safetensors', 'cannot change while the node is configured'),
    ('state_timeout', float('nan'), 'state_timeout')])
def test_changes_that_cannot_apply_while_running_are_refused(node, name, value, reason):
    node.start()
    before = node.node.get_parameter(name).value
    result = set_one(node.node, name, value)
    assert not result.successful
    assert re.search(reason, result.reason), result.reason
    after = node.node.get_parameter(name).value
    assert after == before or name == 'state_timeout'   # NaN != NaN


def test_live_changes_are_applied(node):
    node.start()
    assert set_one(node.node, 'state_timeout', 0.5).successful
    assert node.node.adapter.config.state_timeout == 0.5
    assert node.node._trigger.resync_after == 0.5
    assert set_one(node.node, 'adapt', False).successful
    assert not node.node.adapter.adapt_enabled
    assert set_one(node.node, 'rate_limit', 0.2).successful
    assert node.node.adapter.config.rate_limit == 0.2


def test_unconfigured_node_refuses_a_missing_checkpoint_and_accepts_the_rest(node):
    result = set_one(node.node, 'checkpoint', '/nonexistent.safetensors')
    assert not result.successful and 'no such file' in result.reason
    assert not set_one(node.node, 'trigger', 'bogus').successful
    assert set_one(node.node, 'trigger', 'timer').successful
    assert set_one(node.node, 'control_rate_hz', 5.0).successful
    node.start()
    assert node.node.period == pytest.approx(0.2)
