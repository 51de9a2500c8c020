"""Launch files and params files, checked statically (no launch/launch_ros wheels exist)."""

import ast
import importlib.util
from pathlib import Path
from xml.etree import ElementTree

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
"""Parameters every ROS 2 node has without declaring them."""


def package_name(root=ROOT):
    """Return the package name from package.xml (the launch files' ``package=``)."""
    return ElementTree.parse(root / 'package.xml').getroot().findtext('name')


def console_scripts(root=ROOT):
    """Return ``{executable: module}`` of setup.py's ``entry_points['console_scripts']``."""
    tree = ast.parse((root / 'setup.py').read_text())
    for kw in (k for n in calls(tree, 'setup') for k in n.keywords):
        if kw.arg == 'entry_points':
            entries = ast.literal_eval(kw.value)['console_scripts']
            return {name.strip(): target.split(':')[0].strip()
                    for name, _, target in (e.partition('=') for e in entries)}
    raise AssertionError('setup.py passes no entry_points to setup()')


def declared_parameters(module, root=ROOT):
    """
    Return the parameter names a node module declares.

    Those of its ``PARAMETERS`` table (the adapter's is generated from its settings
    dataclasses, so it is read from the imported module) and of any direct
    ``declare_parameter(...)`` call in its source under ``root``.
    """
    table = getattr(importlib.import_module(module), 'PARAMETERS', ())
    tree = ast.parse((root / (module.replace('.', '/') + '.py')).read_text())
    direct = {c.args[0].value for c in calls(tree, 'declare_parameter')
              if c.args and isinstance(c.args[0], ast.Constant)
              and isinstance(c.args[0].value, str)}
    return {p.name for p in table} | direct


def called(node):
    """Return the name a call calls (``f`` of ``f(...)`` or ``a.b.f(...)``), else None."""
    if not isinstance(node, ast.Call):
        return None
    return getattr(node.func, 'id', getattr(node.func, 'attr', None))


def calls(tree, name):
    return [n for n in ast.walk(tree) if called(n) == name]


def kwarg(call, key):
    return next((k.value for k in call.keywords if k.arg == key), None)


class LaunchFile:
    """A launch file's AST with its simple bindings (``name = expression``) resolved."""

    def __init__(self, path, root=ROOT):
        """Parse ``path``; files it names are looked up under ``root`` (the source tree)."""
        self.name, self.root = Path(path).name, root
        self.tree = ast.parse(Path(path).read_text())
        self.bindings = {n.targets[0].id: n.value for n in ast.walk(self.tree)
                         if isinstance(n, ast.Assign) and len(n.targets) == 1
                         and isinstance(n.targets[0], ast.Name)}
        self.arguments = {c.args[0].value: kwarg(c, 'default_value')
                          for c in calls(self.tree, 'DeclareLaunchArgument')}

    def resolve(self, expr):
        """
        Return what ``expr`` stands for: a str, a Path under the source tree, or None.

        ``os.path.join(get_package_share_directory(...), 'a', 'b')`` is the installed copy of
        ``root/a/b`` (setup.py installs config/, urdf/, ... under share/PACKAGE); a
        ``LaunchConfiguration`` stands for its declared default.
        """
        if isinstance(expr, ast.Name) and expr.id in self.bindings:
            return self.resolve(self.bindings[expr.id])
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if called(expr) == 'join':
            parts = [self.resolve(a) for a in expr.args[1:]]
            if all(isinstance(p, str) for p in parts):
                return self.root.joinpath(*parts)
        if called(expr) == 'LaunchConfiguration':
            default = self.arguments.get(self.resolve(expr.args[0]))
            return None if default is None else self.resolve(default)
        return None


def launch_problems(path, root=ROOT):
    """
    Return what a launch file names that does not exist, one message each (empty: fine).

    Checked without ROS: every node of this package runs a console_script of setup.py, every
    file it names exists, every parameter it sets (inline or in a params file) is declared by
    the node it goes to, and every launch argument it reads is declared.
    """
    launch = LaunchFile(path, root)
    ours, scripts = package_name(root), console_scripts(root)
    problems = []
    nodes = calls(launch.tree, 'Node')
    if not nodes:
        problems.append(f'{launch.name} starts no Node')
    for node in nodes:
        package = launch.resolve(kwarg(node, 'package'))
        executable = launch.resolve(kwarg(node, 'executable'))
        if package != ours:       # another package's node: its parameters are not ours to know
            continue
        if executable not in scripts:
            problems.append(f'{launch.name}: executable {executable!r} is not a console_script '
                            f'of setup.py; have {sorted(scripts)}')
            continue
        declared = declared_parameters(scripts[executable], root) | ROS_BUILTIN
        for item in getattr(kwarg(node, 'parameters'), 'elts', []):
            problems += _parameter_problems(launch, executable, item, declared)
    for join in calls(launch.tree, 'join'):
        target = launch.resolve(join)
        if isinstance(target, Path) and not target.is_file():
            problems.append(f'{launch.name} names a file that does not exist: '
                            f'{target.relative_to(root)}')
    used = {launch.resolve(c.args[0]) for c in calls(launch.tree, 'LaunchConfiguration')}
    if used - set(launch.arguments):
        problems.append(f'{launch.name} reads undeclared launch arguments '
                        f'{sorted(used - set(launch.arguments))}')
    return problems


def _parameter_problems(launch, executable, item, declared):
    """Return the problems of one entry of a Node's ``parameters=[...]`` list."""
    if isinstance(item, ast.Dict):
        keys = [launch.resolve(k) for k in item.keys]
        where = 'sets'
    else:
        target = launch.resolve(item)
        if not isinstance(target, Path):
            return [f'{launch.name}: {executable} gets a parameters entry that is neither a '
                    f'dict nor a file of this package: {ast.unparse(item)}']
        if not target.is_file():
            return [f'{launch.name}: params file {target.relative_to(launch.root)} of '
                    f'{executable} does not exist']
        data = yaml.safe_load(target.read_text())
        keys = [k for section in data.values() for k in section.get('ros__parameters', {})]
        where = f'sets in {target.relative_to(launch.root)}'
    return [f'{launch.name}: {executable} does not declare the parameter {key!r} it {where}'
            for key in keys if key not in declared]


def test_both_launch_files_exist():
    assert {p.name for p in LAUNCH} == {'sim_adapt.launch.py', 'adapt.launch.py'}


@pytest.mark.parametrize('path', LAUNCH, ids=lambda p: p.name)
def test_launch_file_names_real_executables_files_and_parameters(path):
    assert launch_problems(path) == []
    launch = LaunchFile(path)
    started = {launch.resolve(kwarg(n, 'executable')) for n in calls(launch.tree, 'Node')}
    assert started & set(console_scripts()), f'{path.name} starts none of our nodes'
    if path.name == 'adapt.launch.py':
        assert {'command_topic', 'namespace'} <= set(launch.arguments)


@pytest.mark.parametrize('name,old,new,expect', [
    ('sim_adapt', "executable='adapter_node'", "executable='adaptor_node'",
     "executable 'adaptor_node' is not a console_script"),
    ('sim_adapt', "'config', 'adapter.yaml'", "'config', 'adaptor.yaml'",
     'params file config/adaptor.yaml of adapter_node does not exist'),
    ('sim_adapt', "'reward_source': 'topic'", "'reward_src': 'topic'",
     "adapter_node does not declare the parameter 'reward_src' it sets"),
    ('sim_adapt', "'task_index': ParameterValue", "'task_idx': ParameterValue",
     "sim_node does not declare the parameter 'task_idx' it sets"),
    ('sim_adapt', "'urdf', 'reacher.urdf'", "'urdf', 'reacher2.urdf'",
     'names a file that does not exist: urdf/reacher2.urdf'),
    ('sim_adapt', "LaunchConfiguration('task_split')", "LaunchConfiguration('split')",
     "reads undeclared launch arguments ['split']"),
    ('adapt', "{'checkpoint': LaunchConfiguration", "{'check_point': LaunchConfiguration",
     "adapter_node does not declare the parameter 'check_point' it sets"),
    ('adapt', 'default_value=adapter_params', "default_value=os.path.join(share, 'x.yaml')",
     'params file x.yaml of adapter_node does not exist'),
    ('adapt', 'parameters=[LaunchConfiguration', 'parameters=[share, LaunchConfiguration',
     'gets a parameters entry that is neither a dict nor a file of this package: share'),
])
def test_a_broken_copy_of_a_launch_file_is_caught(tmp_path, name, old, new, expect):
    text = (ROOT / 'launch' / f'{name}.launch.py').read_text()
    assert text.count(old) == 1, old
    broken = tmp_path / f'{name}.launch.py'
    broken.write_text(text.replace(old, new))
    problems = launch_problems(broken)
    assert any(expect in p for p in problems), problems


def test_an_undeclared_key_in_a_referenced_params_file_is_caught(tmp_path):
    for name in ('package.xml', 'setup.py'):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for folder in ('config', 'urdf', 'maml_robot/ros'):
        (tmp_path / folder).mkdir(parents=True)
    for name in ('adapter_node.py', 'sim_node.py'):
        (tmp_path / 'maml_robot/ros' / name).write_text((ROOT / 'maml_robot/ros' / name)
                                                        .read_text())
    (tmp_path / 'urdf/reacher.urdf').write_text('<robot/>')
    (tmp_path / 'config/sim.yaml').write_text((ROOT / 'config/sim.yaml').read_text())
    (tmp_path / 'config/adapter.yaml').write_text(
        (ROOT / 'config/adapter.yaml').read_text() + '    learning_rate: 0.1\n')
    problems = launch_problems(ROOT / 'launch' / 'sim_adapt.launch.py', root=tmp_path)
    assert problems == ['sim_adapt.launch.py: adapter_node does not declare the parameter '
                        "'learning_rate' it sets in config/adapter.yaml"]


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


def test_adapter_defaults_agree_with_params_file():
    """One default per setting: the node's (its settings dataclasses') and config/adapter.yaml."""
    params = yaml.safe_load(FILES['adapter_node'].read_text())['/**']['ros__parameters']
    table = {p.name: p.default for p in TABLES['adapter_node']}
    deployment_only = {'checkpoint', 'autostart'}     # the yaml names what to run and starts it
    differ = {k: (table[k], v) for k, v in params.items()
              if k not in deployment_only and v != table[k]}
    assert not differ, f'node default vs config/adapter.yaml: {differ}'
