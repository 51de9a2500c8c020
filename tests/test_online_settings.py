"""Settings dataclasses are the one source of the adapter node's parameters (issue 19.2)."""

from dataclasses import dataclass, fields

from maml_robot.online import OnlineConfig
from maml_robot.online.node_config import NodeConfig
from maml_robot.online.settings import check_fields, setting, settings_of
from maml_robot.ros.params import descriptor, params_from
import pytest


@dataclass
class ExtendedConfig(OnlineConfig):
    """OnlineConfig as a branch adds a field to it: plain, with a docstring only."""

    update_rule: str = 'pg'
    """Online update rule: pg, hill_climb or es."""
    window_seconds: float = setting(2.5, low=0.5, high=10.0)
    """A ranged float."""


def test_a_new_field_becomes_a_parameter_with_its_docstring_and_range():
    table = {p.name: p for p in params_from(ExtendedConfig)}
    assert table['update_rule'].default == 'pg'
    assert table['update_rule'].description == 'Online update rule: pg, hill_climb or es.'
    ranged = descriptor(table['window_seconds']).floating_point_range[0]
    assert (ranged.from_value, ranged.to_value) == (0.5, 10.0)
    # Python-only: synchronous, and the old name inner_steps (a params file is told to rename)
    python_only = {'synchronous', 'inner_steps'}
    assert set(table) == {f.name for f in fields(ExtendedConfig)} - python_only
    with pytest.raises(ValueError, match=r'window_seconds must be float in \[0.5, 10.0\], '
                                         'got 11.0'):
        ExtendedConfig(window_seconds=11.0)


def test_every_online_and_node_field_is_a_parameter_of_the_node():
    from maml_robot.ros.adapter_node import LIVE_FIELDS, PARAMETERS
    names = [p.name for p in PARAMETERS]
    assert len(names) == len(set(names))
    assert set(names) == ({f.name for f in fields(OnlineConfig)}
                          - {'synchronous', 'inner_steps'}) | {
        f.name for f in fields(NodeConfig)}
    assert set(LIVE_FIELDS) == {'adapt', 'state_timeout', 'max_param_delta', 'rate_limit',
                                'rollback_margin', 'divergence_margin', 'rollback_z',
                                'reward_limit'}
    table = {p.name: p for p in PARAMETERS}
    assert (table['steps_per_batch'].low, table['steps_per_batch'].high) == (1, 100)
    assert table['trigger'].choices == ('state', 'timer')
    assert table['state_timeout'].description.startswith('Seconds without fresh state')
    span = descriptor(table['rollouts_per_step']).integer_range[0]
    assert (span.from_value, span.to_value) == (1, 1000)


@pytest.mark.parametrize('cls, name, value, match', [
    (OnlineConfig, 'state_timeout', '0.5', "state_timeout must be float in .*got '0.5'"),
    (OnlineConfig, 'max_param_delta', [1.0], r'max_param_delta must be float .*got \[1.0\]'),
    (OnlineConfig, 'inner_steps', True, 'inner_steps must be int in .*got True'),
    (OnlineConfig, 'inner_steps', 1.5, 'inner_steps must be int'),
    (OnlineConfig, 'adapt', 1, 'adapt must be bool, got 1'),
    (OnlineConfig, 'rollouts_per_step', 1001, r'rollouts_per_step must be int in \[1, 1000\]'),
    (NodeConfig, 'trigger', 'bogus', r'trigger must be str \(one of state, timer\)'),
    (NodeConfig, 'limit_tolerance', -0.1, r'limit_tolerance must be float in \[0.0, 1.0\]'),
    (NodeConfig, 'robot_description_timeout', float('nan'), 'robot_description_timeout'),
])
def test_settings_refuse_a_wrong_type_or_range_by_name(cls, name, value, match):
    with pytest.raises(ValueError, match=match):
        cls(**{name: value})


def test_numbers_are_normalized_to_the_field_type():
    import numpy as np
    config = OnlineConfig(state_timeout=1, steps_per_batch=np.int64(3))
    assert type(config.state_timeout) is float and config.state_timeout == 1.0
    assert type(config.steps_per_batch) is int
    check_fields(config)


def test_settings_of_refuses_a_field_no_ros_parameter_can_hold():
    @dataclass
    class Bad:
        gains: tuple = (1.0, 2.0)
    with pytest.raises(TypeError, match=r'Bad.gains: a setting needs a default of type bool'):
        settings_of(Bad)
