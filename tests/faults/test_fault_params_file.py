"""Issue 18: values in a --params-file are typed as ROS reads them and checked before start."""

from maml_robot import cli
from maml_robot.paths import data_path
from maml_robot.ros import adapter_node, launcher
from maml_robot.ros.params_file import check_params_file
import pytest

HEADER = '/**:\n  ros__parameters:\n'


class NoProcesses:
    """Stands in for NodeProcesses: a command that got this far would start a node."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        raise AssertionError('the command started a node instead of refusing its params file')

    def __exit__(self, *exc):
        return False


@pytest.fixture(autouse=True)
def no_node_processes(monkeypatch):
    monkeypatch.setattr(launcher, 'NodeProcesses', NoProcesses)


def params_file(tmp_path, body, header=HEADER):
    path = tmp_path / 'params.yaml'
    path.write_text(header + ''.join(f'    {line}\n' for line in body.splitlines()))
    return path


CASES = [
    ('control_rate_hz: abc', "control_rate_hz: 'abc' is a string; expected float in [0.0, "
                             '1000.0]'),
    ('control_rate_hz: 25', 'control_rate_hz: 25 is an integer; expected float in [0.0, '
                            '1000.0] (ROS reads 25 as an integer: write 25.0)'),
    ('state_timeout: [0.1, 0.2]', 'state_timeout: [0.1, 0.2] is a list; expected float'),
    ("max_param_delta: '1e-3'", "max_param_delta: '1e-3' is a string; expected float"),
    ('steps_per_batch: 1.5', 'steps_per_batch: 1.5 is a float; expected int in [1, 100]'),
    ('steps_per_batch: 0', 'steps_per_batch: 0 is not a valid value; expected int in [1, 100]'),
    ("adapt: 'true'", "adapt: 'true' is a string; expected bool"),
    ('checkpoint: 123', 'checkpoint: 123 is an integer; expected str (ROS reads it as an '
                        "integer: quote it, '123')"),
    ('trigger: bogus', "trigger: 'bogus' is not a valid value; expected str (one of state, "
                       'timer)'),
    ('max_parm_delta: 0.1', "max_parm_delta: unknown parameter 'max_parm_delta'; did you mean "
                            'max_param_delta'),
    ('rate:\n  limit: 0.1', "rate.limit: unknown parameter 'rate.limit'"),
]


@pytest.mark.parametrize('body, message', CASES, ids=[c[0].split(':')[0] for c in CASES])
def test_a_bad_value_is_refused_naming_file_key_and_type(tmp_path, body, message):
    path = params_file(tmp_path, body)
    with pytest.raises(ValueError) as err:
        check_params_file(path, 'adapter_node', adapter_node.PARAMETERS)
    assert str(err.value) == f'params file {path}: /**: {message}' or message in str(err.value)
    assert str(err.value).startswith(f'params file {path}: /**: ')


@pytest.mark.parametrize('command', [['adapt'], []])
@pytest.mark.parametrize('body, message', CASES[:3] + CASES[-2:-1])
def test_adapt_and_the_node_refuse_it_before_starting(tmp_path, capsys, command, body,
                                                      message):
    path = params_file(tmp_path, body)
    if command:
        assert cli.main(command + ['--params-file', str(path)]) == 2
    else:     # ros2 run maml_robot adapter_node --ros-args --params-file ...
        assert adapter_node.main(['adapter_node', '--ros-args', '--params-file', str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_sim_refuses_a_bad_params_file(tmp_path, capsys):
    path = params_file(tmp_path, 'real_time_factor: fast')
    assert cli.main(['sim', '--params-file', str(path)]) == 2
    assert "real_time_factor: 'fast' is a string; expected float" in capsys.readouterr().err


def test_good_files_pass_and_sections_for_other_nodes_are_left_alone(tmp_path):
    shipped = data_path('config', 'adapter.yaml')
    assert check_params_file(shipped, 'adapter_node', adapter_node.PARAMETERS) == len(
        adapter_node.PARAMETERS)
    path = params_file(tmp_path, 'real_time_factor: fast',
                       header='sim_node:\n  ros__parameters:\n')
    path.write_text(path.read_text() + '/adapter_node:\n  ros__parameters:\n    '
                    'control_rate_hz: 25.0\n    use_sim_time: true\n    checkpoint: "123"\n')
    assert check_params_file(path, 'adapter_node', adapter_node.PARAMETERS) == 3
    nested = tmp_path / 'nested.yaml'
    nested.write_text('robot1:\n  adapter_node:\n    ros__parameters:\n'
                      '      steps_per_batch: two\n')
    with pytest.raises(ValueError,
                       match="robot1/adapter_node: steps_per_batch: 'two' is a string"):
        check_params_file(nested, 'adapter_node', adapter_node.PARAMETERS)


@pytest.mark.parametrize('content, message', [
    (b'\xff\xfe\x00\x81 binary', 'is not UTF-8 text'),
    (b'a: [1, 2', 'is not valid YAML'),
    (b'- 1\n- 2\n', 'expected a mapping of node names'),
    (b'/**:\n  parameters:\n    x: 1\n', 'has no ros__parameters section'),
])
def test_a_file_that_is_no_params_file_is_named(tmp_path, content, message):
    path = tmp_path / 'bad.yaml'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        check_params_file(path, 'adapter_node', adapter_node.PARAMETERS)
    assert str(path) in str(err.value)


def test_an_old_params_file_is_told_the_new_name(tmp_path):
    """inner_steps (the online name before steps_per_batch) is refused with the rename."""
    old = tmp_path / 'old.yaml'
    old.write_text('/**:\n  ros__parameters:\n    inner_steps: 2\n')
    with pytest.raises(ValueError, match="'inner_steps' was renamed 'steps_per_batch'"):
        check_params_file(old, 'adapter_node', adapter_node.PARAMETERS)


def test_a_removed_parameter_is_named_with_why_and_what_to_do(tmp_path):
    """The device parameter (never read: the policy ran on the CPU) is refused, not ignored."""
    old = tmp_path / 'old.yaml'
    old.write_text('/**:\n  ros__parameters:\n    device: auto\n')
    with pytest.raises(ValueError, match=rf'params file {old}: /\*\*: device: parameter '
                       r"'device' was removed: the adapter node runs its policy on the CPU"
                       r'.*; delete it$'):
        check_params_file(old, 'adapter_node', adapter_node.PARAMETERS)
    assert 'device' not in {p.name for p in adapter_node.PARAMETERS}
    # the same message for `maml-robot adapt --set` and `ros2 param set`
    with pytest.raises(ValueError, match="'device' was removed"):
        launcher.parse_overrides(['device=cpu'], adapter_node.PARAMETERS)
