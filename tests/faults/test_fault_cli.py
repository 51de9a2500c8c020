"""Issue 18.5, 18.8: --set values parsed as ROS parses them; bad names and values refused."""

from maml_robot import cli
from maml_robot.ros import launcher
import pytest


class NoProcesses:
    """Stands in for NodeProcesses: a command that got this far would start a node."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        raise AssertionError('the command started a node instead of refusing its arguments')

    def __exit__(self, *exc):
        return False


@pytest.fixture(autouse=True)
def no_node_processes(monkeypatch):
    monkeypatch.setattr(launcher, 'NodeProcesses', NoProcesses)


def adapter_table():
    return launcher.node_parameters('adapter_node')


def test_set_values_are_parsed_as_ros_parses_them():
    got = launcher.parse_overrides(['max_param_delta=1e-3', 'state_timeout=0.5',
                                    'control_rate_hz=5', 'adapt=false', 'checkpoint=123',
                                    'trigger=timer'], adapter_table())
    assert got == {'max_param_delta': 0.001, 'state_timeout': 0.5, 'control_rate_hz': 5.0,
                   'adapt': False, 'checkpoint': '123', 'trigger': 'timer'}
    assert isinstance(got['control_rate_hz'], float)
    assert launcher.parse_overrides(['use_sim_time=true'], adapter_table()) == {
        'use_sim_time': True}


@pytest.mark.parametrize('item, match', [
    ('control_rate_hz=abc', "parameter 'control_rate_hz': 'abc' is not a valid value; "
                            'expected float in'),
    ('max_param_delta=-1', "parameter 'max_param_delta'"),
    ('state_timeout=nan', "parameter 'state_timeout'"),
    ('steps_per_batch=1.5', "parameter 'steps_per_batch'.*expected int"),
    ('adapt=maybe', "parameter 'adapt'.*expected bool"),
    ('trigger=bogus', "parameter 'trigger'.*one of state, timer"),
    ('max_parm_delta=0.1', "unknown parameter 'max_parm_delta'; did you mean max_param_delta"),
])
def test_set_refuses_unknown_names_and_bad_values(item, match):
    with pytest.raises(ValueError, match=match):
        launcher.parse_overrides([item], adapter_table())


@pytest.mark.parametrize('command, item, match', [
    ('adapt', 'control_rate_hz=abc', 'control_rate_hz'),
    ('adapt', 'max_parm_delta=1e-3', 'unknown parameter'),
    ('sim', 'real_time_factor=fast', 'real_time_factor'),
    ('sim', 'task_splitt=ood', "unknown parameter 'task_splitt'"),
])
def test_commands_refuse_bad_overrides_before_starting(capsys, command, item, match):
    assert cli.main([command, '--set', item]) == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize('argv', [
    ['adapt', '--domain-id', '-5'], ['sim', '--domain-id', '300'],
    ['eval', 'x.safetensors', '--torch-threads', '0'],
    ['train', '--threads', '0']])
def test_bad_numbers_on_the_command_line_are_refused(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'ROS_DOMAIN_ID' in err or 'integer >= 1' in err
