"""Settings dataclasses are the one source of the adapter node's parameters (issue 19.2)."""

from dataclasses import dataclass, fields

from maml_robot.online import OnlineConfig
from maml_robot.online.node_config import NodeConfig
from maml_robot.ros.params import descriptor, params_from
from maml_robot.settings import setting, validate
import pytest


@dataclass
class ExtendedConfig(OnlineConfig):
    """OnlineConfig as a branch adds a field to it: plain, with a docstring only."""

    update_rule: str = 'pg'
    """Online update rule: pg, hill_climb or es."""
    window_seconds: float = setting(2.5, bounds='[0.5, 10.0]')
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
    with pytest.raises(ValueError, match=r'window_seconds: expected a number in \[0.5, 10.0\], '
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
    (OnlineConfig, 'state_timeout', '0.5',
     r"state_timeout: expected a number in \[0.001, 60.0\], got '0.5'"),
    (OnlineConfig, 'max_param_delta', [1.0],
     r'max_param_delta: expected a number in \[1e-6, 1e6\], got \[1.0\]'),
    (OnlineConfig, 'inner_steps', True,
     r'inner_steps: expected an integer in \[1, 100\], got True'),
    (OnlineConfig, 'inner_steps', 1.5, 'inner_steps: expected an integer in .*got 1.5'),
    (OnlineConfig, 'adapt', 1, 'adapt: expected true or false, got 1'),
    (OnlineConfig, 'rollouts_per_step', 1001,
     r'rollouts_per_step: expected an integer in \[1, 1000\], got 1001'),
    (NodeConfig, 'trigger', 'bogus',
     r"trigger: expected one of \('state', 'timer'\), got 'bogus'"),
    (NodeConfig, 'limit_tolerance', -0.1, r'limit_tolerance: expected a number in \[0.0, 1.0\]'),
    (NodeConfig, 'robot_description_timeout', float('nan'),
     'robot_description_timeout: expected a number in .*got nan'),
    (NodeConfig, 'seed', 2 ** 31, r'seed: expected an integer in \[0, 2147483647\]'),
])
def test_settings_refuse_a_wrong_type_or_range_by_name(cls, name, value, match):
    with pytest.raises(ValueError, match=match):
        cls(**{name: value})


def test_numbers_are_normalized_to_the_field_type():
    import numpy as np
    config = OnlineConfig(state_timeout=1, steps_per_batch=np.int64(3))
    assert type(config.state_timeout) is float and config.state_timeout == 1.0
    assert type(config.steps_per_batch) is int
    validate(config)


def test_params_from_refuses_a_field_no_ros_parameter_can_hold():
    @dataclass
    class Bad:
        gains: tuple = (1.0, 2.0)
    with pytest.raises(TypeError, match=r'Bad.gains: a ROS parameter needs a type and a default '
                                        'of bool, int, float or str'):
        params_from(Bad)

    @dataclass
    class Mixed:
        rate: float = 1
    with pytest.raises(TypeError, match=r'Mixed.rate: .* got <class .float.> = 1'):
        params_from(Mixed)

    @dataclass
    class PythonOnly:
        gains: tuple[int, ...] = setting((1, 2), ros=False)
        rate: float = 2.0
    assert [p.name for p in params_from(PythonOnly)] == ['rate']


# The adapter's parameters as main declared them before the two settings modules became one
# (maml_robot/online/settings.py's low=/high= against maml_robot/settings.py's bounds=): name,
# default (its type is the parameter's), the ROS range (from_value, to_value), the choices.
PINNED = [
    ('checkpoint', 'reacher', None, None),
    ('control_rate_hz', 0.0, (0.0, 1000.0), None),
    ('trigger', 'state', None, ('state', 'timer')),
    ('command_topic', '/forward_effort_controller/commands', None, None),
    ('command_joint_order', '', None, None),
    ('command_type', 'array', None, ('array', 'trajectory')),
    ('reward_source', 'internal', None, ('internal', 'topic')),
    ('robot_description', '', None, None),
    ('robot_description_timeout', 2.0, (0.0, 600.0), None),
    ('require_robot_description', False, None, None),
    ('limit_tolerance', 0.01, (0.0, 1.0), None),
    ('torch_threads', 1, (1, 256), None),
    ('persist_path', '', None, None),
    ('seed', 0, (0, 2 ** 31 - 1), None),
    ('diagnostics_period', 1.0, (0.01, 3600.0), None),
    ('autostart', False, None, None),
    ('adapt', True, None, None),
    ('adaptation', '', None, ('', 'pg', 'hill_climb', 'es')),
    ('adaptation_args', '', None, None),
    ('steps_per_batch', 1, (1, 100), None),
    ('rollouts_per_step', 20, (1, 1000), None),
    ('episode_steps', 0, (0, 1000000), None),
    ('min_episode_steps', 0, (0, 1000000), None),
    ('state_timeout', 0.1, (0.001, 60.0), None),
    ('max_param_delta', 1.0, (1e-6, 1e6), None),
    ('rate_limit', 0.0, (0.0, 2.0), None),
    ('ramp_in_steps', 10, (0, 100000), None),
    ('fade_in_steps', 25, (0, 100000), None),
    ('accept_window', 0, (0, 1000), None),
    ('rollback_margin', 0.1, (0.0, 10.0), None),
    ('divergence_margin', 0.5, (0.0, 100.0), None),
    ('rollback_z', 1.64, (0.0, 10.0), None),
    ('reward_limit', 1e6, (1e-6, 1e300), None),
]


@pytest.mark.parametrize('name, default, span, choices', PINNED, ids=[p[0] for p in PINNED])
def test_every_existing_parameter_keeps_its_type_default_range_and_choices(
        name, default, span, choices):
    from maml_robot.ros.adapter_node import PARAMETERS
    param = {p.name: p for p in PARAMETERS}[name]
    assert (param.default, type(param.default)) == (default, type(default))
    assert param.choices == choices
    desc = descriptor(param)
    assert desc.description == param.description and param.description
    assert desc.additional_constraints == ('one of: ' + ', '.join(choices) if choices else '')
    ranges = list(desc.integer_range) + list(desc.floating_point_range)
    if span is None:
        assert (ranges, param.low, param.high) == ([], None, None)
        return
    kind = type(default)
    assert ranges == list(desc.integer_range if kind is int else desc.floating_point_range)
    assert (ranges[0].from_value, ranges[0].to_value, ranges[0].step) == span + (
        (1,) if kind is int else (0.0,))
    assert type(param.low) is type(param.high) is kind
