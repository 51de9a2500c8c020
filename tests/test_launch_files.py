"""Launch files and params files, checked statically (no launch/launch_ros wheels exist)."""

import ast
import importlib.util
from pathlib import Path

import maml_robot.ros.adapter_node as adapter_node
import maml_robot.ros.sim_node as sim_node
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = sorted((ROOT / 'launch').glob('*.launch.py'))
TABLES = {'adapter_node': adapter_node.PARAMETERS, 'sim_node': sim_node.PARAMETERS}
FILES = {'adapter_node': ROOT / 'config' / 'adapter.yaml',
         'sim_node': ROOT / 'config' / 'sim.yaml'}
ROS_BUILTIN = {'use_sim_time'}


def console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    scripts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ' = ' in node.value:
            name, _, target = node.value.partition(' = ')
            if ':' in target:
                scripts.add(name.strip())
    return scripts


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def kwarg(call, key):
    return next((k.value for k in call.keywords if k.arg == key), None)


def test_both_launch_files_exist():
    assert {p.name for p in LAUNCH} == {'sim_adapt.launch.py', 'adapt.launch.py'}


@pytest.mark.parametrize('path', LAUNCH, ids=lambda p: p.name)
def test_launch_file_names_real_executables_files_and_parameters(path):
    tree = ast.parse(path.read_text())
    scripts = console_scripts()
    nodes = calls(tree, 'Node')
    assert nodes, f'{path.name} starts no Node'
    ours = []
    for node in nodes:
        package = kwarg(node, 'package')
        executable = kwarg(node, 'executable').value
        if isinstance(package, ast.Name):          # PACKAGE = 'maml_robot'
            assert executable in scripts, f'{executable} is not a console_script in setup.py'
            ours.append(executable)
            for d in ast.walk(kwarg(node, 'parameters')):
                if isinstance(d, ast.Dict):
                    for key in d.keys:
                        declared = {p.name for p in TABLES[executable]} | ROS_BUILTIN
                        assert key.value in declared, f'{path.name}: {key.value} undeclared'
    assert ours
    for join in calls(tree, 'join'):
        parts = [a.value for a in join.args[1:] if isinstance(a, ast.Constant)]
        if parts:
            assert (ROOT.joinpath(*parts)).is_file(), f'{path.name} names missing {parts}'
    declared = {c.args[0].value for c in calls(tree, 'DeclareLaunchArgument')}
    used = {c.args[0].value for c in calls(tree, 'LaunchConfiguration')}
    assert used <= declared, f'undeclared launch arguments {used - declared}'
    if path.name == 'adapt.launch.py':
        assert {'command_topic', 'namespace'} <= declared


@pytest.mark.parametrize('node', sorted(FILES))
def test_params_file_matches_declared_parameters(node):
    data = yaml.safe_load(FILES[node].read_text())
    params = data['/**']['ros__parameters']
    table = {p.name: p for p in TABLES[node]}
    assert set(params) == set(table), (f'{FILES[node].name}: extra {set(params) - set(table)}, '
                                       f'missing {set(table) - set(params)}')
    for name, value in params.items():
        default = table[name].default
        assert type(value) is type(default), f'{name}: {value!r} vs declared {default!r}'
        if table[name].choices:
            assert value in table[name].choices
        if table[name].low is not None:
            assert table[name].low <= value <= table[name].high, name


@pytest.mark.skipif(importlib.util.find_spec('launch_ros') is None,
                    reason='launch_ros comes with a ROS distro, not from PyPI')
@pytest.mark.parametrize('path', LAUNCH, ids=lambda p: p.name)
def test_launch_description_builds_with_a_ros_distro(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities


def test_adapter_defaults_agree_with_params_file_and_online_config():
    """One default per setting: the node, config/adapter.yaml and OnlineConfig agree."""
    from dataclasses import fields
    from maml_robot.online import OnlineConfig
    from maml_robot.ros.adapter_node import CONFIG_FIELDS
    params = yaml.safe_load(FILES['adapter_node'].read_text())['/**']['ros__parameters']
    table = {p.name: p.default for p in TABLES['adapter_node']}
    deployment_only = {'checkpoint', 'autostart'}     # the yaml names what to run and starts it
    differ = {k: (table[k], v) for k, v in params.items()
              if k not in deployment_only and v != table[k]}
    assert not differ, f'node default vs config/adapter.yaml: {differ}'
    config = {f.name: f.default for f in fields(OnlineConfig)}
    differ = {k: (table[k], config[k]) for k in CONFIG_FIELDS if table[k] != config[k]}
    assert not differ, f'node default vs OnlineConfig: {differ}'
