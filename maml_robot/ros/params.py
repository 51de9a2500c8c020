"""Declare ROS parameters from one table (name, default, description, range) and read them."""

from dataclasses import dataclass, fields
import difflib
import math
from typing import Any, Optional

from maml_robot.settings import field_docs, kind_of, spec_of, value_range
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException


@dataclass(frozen=True)
class Param:
    """One declared parameter: its default fixes its type."""

    name: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None


ROS_TYPES = (bool, int, float, str)
"""Types a parameter declared from a setting can have (the scalar types of ROS parameters)."""


def params_from(settings_class) -> tuple:
    """
    Return the Param table of a settings dataclass (``OnlineConfig``, ``NodeConfig``).

    Every field not marked ``setting(..., ros=False)`` (:mod:`maml_robot.settings`), with its
    default, its docstring as the description, its ``bounds`` as the range and its choices: a
    new field is a new parameter. TypeError names a field no ROS parameter can hold.
    """
    docs = field_docs(settings_class)
    table = []
    for f in fields(settings_class):
        spec = spec_of(f)
        if not spec.ros:
            continue
        if type(f.default) not in ROS_TYPES or kind_of(f) != (type(f.default), False):
            raise TypeError(f'{settings_class.__name__}.{f.name}: a ROS parameter needs a type '
                            f'and a default of bool, int, float or str, got {f.type} = '
                            f'{f.default!r} (setting(..., ros=False) keeps it Python-only)')
        low, high = value_range(f)
        table.append(Param(f.name, f.default, docs.get(f.name, f.name.replace('_', ' ')),
                           low, high, tuple(spec.choices) if spec.choices else None))
    return tuple(table)


def live_names(settings_class) -> tuple:
    """Return the names of the parameters of ``settings_class`` marked ``setting(live=True)``."""
    return tuple(f.name for f in fields(settings_class)
                 if spec_of(f).ros and spec_of(f).live)


def descriptor(param: Param) -> ParameterDescriptor:
    """Build the ROS ParameterDescriptor: description, constraints and range."""
    desc = ParameterDescriptor(description=param.description)
    if param.choices:
        desc.additional_constraints = 'one of: ' + ', '.join(param.choices)
    if (param.low is not None or param.high is not None) and isinstance(param.default, bool):
        raise TypeError(f'{param.name}: a bool parameter cannot have a range')
    if param.low is None and param.high is None:
        return desc
    low = -math.inf if param.low is None else param.low
    high = math.inf if param.high is None else param.high
    if isinstance(param.default, int):
        big = 2 ** 63 - 1
        desc.integer_range = [IntegerRange(from_value=int(max(low, -big)),
                                           to_value=int(min(high, big)), step=1)]
    else:
        desc.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                        to_value=float(high), step=0.0)]
    return desc


def declare_all(node, table) -> None:
    """
    Declare every parameter of ``table`` on ``node``.

    A value of the wrong type or out of range (from a params file or ``-p``) raises ValueError
    naming the parameter, the bad value and what is expected.
    """
    for param in table:
        try:
            node.declare_parameter(param.name, param.default, descriptor(param))
        except ParameterException as err:
            raise ValueError(f'parameter {param.name!r}: {err}; expected {expected_text(param)} '
                             f'(default {param.default!r})') from err


def read_all(node, table) -> dict:
    """Return {name: value}, checking choices; ValueError names the parameter to fix."""
    values = {}
    for param in table:
        value = node.get_parameter(param.name).value
        if param.choices and value not in param.choices:
            raise ValueError(f'parameter {param.name!r} is {value!r}; expected one of '
                             f'{list(param.choices)}')
        values[param.name] = value
    return values


ROS_PARAMETERS = (Param('use_sim_time', False, 'follow /clock (declared by every ROS node)'),)


def expected_text(param: Param) -> str:
    """Return what a parameter accepts, for error messages: 'float in [0.0, 1.0]'."""
    text = type(param.default).__name__
    if param.low is not None or param.high is not None:
        text += f' in [{param.low}, {param.high}]'
    if param.choices:
        text += ' (one of ' + ', '.join(c if c else "''" for c in param.choices) + ')'
    return text


def check_value(param: Param, value):
    """Return ``value`` as the parameter's type; ValueError naming it if it does not fit."""
    kind = type(param.default)
    ok = isinstance(value, kind) and (kind is bool) == isinstance(value, bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if ok and kind in (int, float):
        ok = not (isinstance(value, float) and math.isnan(value)) \
            and (param.low is None or value >= param.low) \
            and (param.high is None or value <= param.high)
    if ok and param.choices:
        ok = value in param.choices
    if not ok:
        raise ValueError(f'parameter {param.name!r}: {value!r} is not a valid value; expected '
                         f'{expected_text(param)} (default {param.default!r})')
    return value


RENAMED = {'inner_steps': 'steps_per_batch'}
"""Old parameter names and their new ones (an old params file gets told what to write)."""
REMOVED = {'device': 'the adapter node runs its policy on the CPU (a policy this small is '
                     'fastest there; a GPU would add a transfer to every command), and no value '
                     'of device ever changed that'}
"""Parameters that are gone, and why (an old params file gets told to delete them)."""


def find_param(table, name: str) -> Param:
    """Return the parameter ``name`` of ``table``; ValueError with the closest known names."""
    known = {p.name: p for p in tuple(table) + ROS_PARAMETERS}
    if name in known:
        return known[name]
    if name in REMOVED:
        raise ValueError(f'parameter {name!r} was removed: {REMOVED[name]}; delete it')
    if RENAMED.get(name) in known:
        raise ValueError(f'parameter {name!r} was renamed {RENAMED[name]!r}: write '
                         f'{RENAMED[name]} instead (same meaning, same value)')
    close = difflib.get_close_matches(name, known, n=3)
    hint = f'did you mean {", ".join(close)}? ' if close else ''
    raise ValueError(f'unknown parameter {name!r}; {hint}known: {", ".join(sorted(known))}')
