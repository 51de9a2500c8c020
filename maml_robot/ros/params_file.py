"""
Check a ROS 2 params file against a node's parameters before the node starts.

ROS reads a params file's values with its own YAML rules (an unquoted ``25`` is an integer,
``25.0`` and ``1e-3`` doubles, a quoted value always a string) and then refuses, at start-up
and naming neither file nor fix, a value whose type is not the declared one; a name the node
does not declare it ignores without a word. Here both are refused, naming the file, the key
and the type expected, in the sections that apply to the node (``/**``, ``NODE``, ``/ns/NODE``,
wildcards; sections for other nodes are left alone).
"""

from pathlib import Path

from maml_robot.ros.launcher import parse_value
from maml_robot.ros.params import check_value, expected_text, find_param
import yaml

KIND_NAMES = {bool: 'a bool', int: 'an integer', float: 'a float', str: 'a string',
              list: 'a list', dict: 'a mapping'}


def ros_value(node):
    """Return the value ROS reads from a composed YAML node (plain scalars typed as ROS does)."""
    if isinstance(node, yaml.ScalarNode):
        return parse_value(node.value) if node.style is None else node.value
    if isinstance(node, yaml.SequenceNode):
        return [ros_value(item) for item in node.value]
    return {key.value: ros_value(value) for key, value in node.value}


def _sections(node, path):
    """Yield (section name, ros__parameters mapping node) of a params file's mapping."""
    for key, value in node.value:
        name = f'{path}/{key.value}' if path else str(key.value)
        if key.value == 'ros__parameters':
            yield path or '/', value
        elif isinstance(value, yaml.MappingNode):
            yield from _sections(value, name)


def _applies(section: str, node_name: str) -> bool:
    """Return True when a params file section sets parameters of ``node_name``."""
    last = section.rstrip('/').rpartition('/')[2]
    return last in (node_name, '*', '**') or section == '/'


def _flat(mapping, prefix=''):
    """Yield (dotted name, YAML node) of a ros__parameters mapping (nested names joined by .)."""
    for key, value in mapping.value:
        name = f'{prefix}{key.value}'
        if isinstance(value, yaml.MappingNode):
            yield from _flat(value, name + '.')
        else:
            yield name, value


def _load(path: Path):
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise ValueError(f'params file {path} does not exist') from None
    except UnicodeDecodeError:
        raise ValueError(f'params file {path} is not UTF-8 text (a ROS 2 params YAML)') from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        raise ValueError(f'params file {path} is not valid YAML: {err}') from None
    if not isinstance(root, yaml.MappingNode):
        raise ValueError(f'params file {path}: expected a mapping of node names to '
                         '{ros__parameters: {...}}, e.g. "/**:\\n  ros__parameters:\\n    '
                         'name: value"')
    return root


def check_params_file(path, node_name: str, table) -> int:
    """
    Raise ValueError naming the file, the key and the type expected for the first bad entry.

    Checks every parameter of the sections that apply to ``node_name`` against ``table`` (a
    node's Param table): the name is declared, the type is the declared one as ROS reads it,
    the value within the range and choices. Returns the number of values checked.
    """
    path = Path(path)
    sections = list(_sections(_load(path), ''))
    if not sections:
        raise ValueError(f'params file {path} has no ros__parameters section; expected '
                         '"/**:\\n  ros__parameters:\\n    name: value"')
    count = 0
    for section, mapping in sections:
        if not _applies(section, node_name):
            continue
        if not isinstance(mapping, yaml.MappingNode):
            raise ValueError(f'params file {path}: {section}: ros__parameters must be a '
                             'mapping of parameter names to values')
        for name, node in _flat(mapping):
            where = f'params file {path}: {section}: {name}'
            try:
                param = find_param(table, name)
            except ValueError as err:
                raise ValueError(f'{where}: {err}') from None
            _check_entry(where, param, ros_value(node), node)
            count += 1
    return count


def _check_entry(where, param, value, node):
    """Raise ValueError unless ``value`` (as ROS reads it) fits ``param`` exactly."""
    kind = type(param.default)
    hint = ''
    if type(value) is not kind:
        if kind is float and type(value) is int:
            hint = f' (ROS reads {node.value} as an integer: write {value}.0)'
        elif kind is str and isinstance(node, yaml.ScalarNode):
            hint = f" (ROS reads it as {KIND_NAMES.get(type(value), 'another type')}: quote " \
                   f"it, '{node.value}')"
        got = KIND_NAMES.get(type(value), type(value).__name__)
        raise ValueError(f'{where}: {value!r} is {got}; expected {expected_text(param)}'
                         f'{hint}')
    try:
        check_value(param, value)
    except ValueError:
        raise ValueError(f'{where}: {value!r} is not a valid value; expected '
                         f'{expected_text(param)} (default {param.default!r})') from None


def check_params_files(paths, node_name: str, table) -> None:
    """Check every params file of a node (``check_params_file``); ValueError on the first bad."""
    for path in paths:
        check_params_file(path, node_name, table)


def params_files_of(argv) -> list:
    """Return the ``--params-file`` paths of a node's command line (after ``--ros-args``)."""
    files, ros = [], False
    for arg, nxt in zip(argv, list(argv[1:]) + [None]):
        if arg == '--ros-args':
            ros = True
        elif arg == '--':
            ros = False
        elif ros and arg == '--params-file' and nxt is not None:
            files.append(nxt)
    return files
