"""
Typed settings: dataclass fields that carry their bounds, checks and command-line flags.

A configuration dataclass declares each setting once: ``workers: int = setting(2,
bounds='>= 1')`` with a docstring under it (the CleanRL ``Args`` style), and calls
:func:`validate` in its ``__post_init__``. From that declaration alone come: the check of a
value (type from the annotation, bounds, choices) with an error naming the key and what to write
(:func:`validate`, :func:`from_dict`), a command-line flag whose help is the docstring
(:func:`add_flags`, :func:`flag_values`), where the value goes in a nested configuration
(:func:`section`), and, for the adapter node's settings (``OnlineConfig``, ``NodeConfig``), its
ROS parameter: the docstring is its description, :func:`value_range` its range, ``live`` and
``ros`` say whether it may change while the node runs and whether it is one
(``maml_robot/ros/params.py`` builds the table). This is the one module that declares, documents
and checks a setting. Adding a setting is adding its field; nothing else needs to change.
"""

import argparse
import ast
from dataclasses import dataclass, field, fields
import functools
import inspect
import math
import numbers
import re
import textwrap
import types
import typing

SPEC_KEY = 'maml_robot.setting'


@dataclass(frozen=True)
class Spec:
    """What a setting accepts and where it appears, besides its type and default."""

    bounds: str | None = None
    """Allowed range of a number (of each entry of a list): '>= 1', '> 0', '[0, 1]', '(0, 1)'."""
    choices: tuple | None = None
    """The allowed values of a string setting (also the flag's choices)."""
    check: typing.Callable | None = None
    """Extra test ``check(value) -> bool``; it replaces the membership test of ``choices``
    (which then name the usual values, and the flag takes any string)."""
    want: str | None = None
    """What to write, for the error message, when the generated text would not say it well."""
    note: str | None = None
    """Appended to what to write (a reason: '(the baseline needs 2)')."""
    flag: str | bool | None = None
    """Command-line flag name without '--' (default: the key with '-' for '_'); False: none."""
    to: tuple | None = None
    """``(section, key)``: where the value goes in a nested configuration (:func:`section`)."""
    live: bool = False
    """A node's setting that may change while the node runs (applied at once); else it waits
    for the next configure."""
    ros: bool = True
    """A node's setting declared as a ROS parameter of the node (False: Python only)."""


def setting(default, **spec) -> typing.Any:
    """Return a dataclass field with ``default`` and a :class:`Spec` built from ``spec``."""
    if isinstance(default, (list, dict, set)):
        raise TypeError(f'mutable default {default!r}: use a tuple')
    spec = Spec(**spec)
    if spec.bounds is not None:
        limits(spec.bounds)  # a typo fails at import, not at the first check
    return field(default=default, metadata={SPEC_KEY: spec})


@functools.lru_cache(maxsize=None)
def limits(bounds: str) -> tuple:
    """Return ``(low, high, open_low, open_high)`` of a bounds text ('[0, 1)', '>= 1')."""
    text = bounds.strip()
    interval = re.fullmatch(r'([\[(])([^,]+),([^,]+)([\])])', text)
    if interval:
        left, low, high, right = interval.groups()
        return _number(low, bounds), _number(high, bounds), left == '(', right == ')'
    side = re.fullmatch(r'(>=|>|<=|<)(.+)', text)
    if not side:
        raise ValueError(f"bounds {bounds!r}: write '>= a', '> a', '<= b', '< b' or an "
                         "interval '[a, b]', '(a, b)', '[a, b)', '(a, b]'")
    op, value = side.group(1), _number(side.group(2), bounds)
    if op.startswith('>'):
        return value, None, op == '>', False
    return None, value, False, op == '<'


def _number(text: str, bounds: str):
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'bounds {bounds!r}: {text.strip()!r} is not a number')
    return value


def spec_of(f) -> Spec:
    """Return the :class:`Spec` of a dataclass field (an empty one for a plain field)."""
    return f.metadata.get(SPEC_KEY, Spec())


def kind_of(f) -> tuple:
    """Return ``(base, optional)``: base is int, float, bool, str or 'ints' (tuple[int, ...])."""
    tp, optional = f.type, False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = len(args) < len(typing.get_args(tp)), args[0]
        if len(args) != 1:
            raise TypeError(f'{f.name}: a setting has one type (or it and None), got {f.type}')
    if tp in (int, float, bool, str):
        return tp, optional
    if typing.get_origin(tp) is tuple and typing.get_args(tp) == (int, Ellipsis):
        return 'ints', optional
    raise TypeError(f'{f.name}: unsupported setting type {f.type}')


def _bounds_text(spec: Spec) -> str:
    if spec.bounds is None:
        return ''
    text = spec.bounds.strip()
    return f' in {text}' if text[0] in '[(' else f' {text}'


def expected(f) -> str:
    """Return what the setting accepts, as the error message says it: 'an integer >= 1'."""
    spec, (base, optional) = spec_of(f), kind_of(f)
    if spec.want is not None:
        text = spec.want
    elif base is bool:
        text = 'true or false'
    elif base is str:
        text = f'one of {spec.choices}' if spec.choices else 'a string'
    elif base == 'ints':
        text = f'a non-empty list of integers{_bounds_text(spec)}, e.g. {list(f.default)}'
    else:
        text = ('an integer' if base is int else 'a number') + _bounds_text(spec)
    if optional and spec.want is None:
        text = f'null or {text}'
    return text if spec.note is None else f'{text} {spec.note}'


def _in_bounds(spec: Spec, value) -> bool:
    if spec.bounds is None:
        return True
    low, high, open_low, open_high = limits(spec.bounds)
    if low is not None and (value <= low if open_low else value < low):
        return False
    return high is None or (value < high if open_high else value <= high)


def _is_int(value) -> bool:
    """Return True for an integer (numpy's too), never for a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def value_range(f) -> tuple:
    """
    Return ``(low, high)`` of a number setting as its type (None: unbounded on that side).

    The limits of its ``bounds`` whether open or closed: a ROS parameter's range is closed, so
    '> 0' gives low 0 there while :func:`check_value` still refuses 0 itself.
    """
    spec, (base, _) = spec_of(f), kind_of(f)
    if spec.bounds is None:
        return None, None
    cast = float if base is float else int
    return tuple(None if v is None else cast(v) for v in limits(spec.bounds)[:2])


def check_value(f, value):
    """Return ``value`` as the field's type; ValueError '<key>: expected <what>, got <value>'."""
    spec, (base, optional) = spec_of(f), kind_of(f)
    if value is None and optional:
        return None
    bad = ValueError(f'{f.name}: expected {expected(f)}, got {value!r}')
    if base is int:
        ok = _is_int(value)
        value = int(value) if ok else value
        ok = ok and _in_bounds(spec, value)
    elif base is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(value)
        value = float(value) if ok else value
        ok = ok and _in_bounds(spec, value)
    elif base is bool:
        ok = isinstance(value, bool)
    elif base is str:
        ok = isinstance(value, str)
    else:  # 'ints'
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
            _is_int(v) and _in_bounds(spec, v) for v in value)
        value = tuple(int(v) for v in value) if ok else value
    if ok and spec.check is not None:
        ok = bool(spec.check(value))
    elif ok and spec.choices is not None:
        ok = value in spec.choices
    if not ok:
        raise bad
    return value


def validate(obj) -> None:
    """Check every field of the dataclass ``obj`` in place (int -> float, numpy -> Python)."""
    for f in fields(obj):
        object.__setattr__(obj, f.name, check_value(f, getattr(obj, f.name)))


def from_dict(cls, values, source: str = 'config'):
    """Build ``cls`` from a mapping; an unknown key or a bad value names ``source`` and the key."""
    if not isinstance(values, dict):
        raise ValueError(f'{source}: expected a mapping of {cls.__name__} keys, got '
                         f'{type(values).__name__}')
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            raise ValueError(f'{source}: unknown key {key!r}; valid keys are '
                             f'{", ".join(known)}')
    try:
        return cls(**values)
    except ValueError as err:
        raise ValueError(f'{source}: {err}') from None


def section(obj, name) -> dict:
    """Return ``{key: value}`` of the fields of ``obj`` whose ``to`` is ``(name, key)``."""
    return {spec_of(f).to[1]: getattr(obj, f.name) for f in fields(obj)
            if spec_of(f).to is not None and spec_of(f).to[0] == name}


@functools.lru_cache(maxsize=None)
def field_docs(cls) -> dict:
    """
    Return ``{field name: docstring}``: the string literal under each field of ``cls``.

    Read from the source of ``cls`` and of the classes it derives from (as tyro does), white
    space folded; a class whose source is not available (built in, made at run time) adds none.
    """
    docs = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        except (OSError, TypeError):
            continue
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = ' '.join(after.value.value.split())
    return docs


def flag_name(f) -> str | None:
    """Return the flag of a field without '--' ('outer-lr'), or None when it has none."""
    flag = spec_of(f).flag
    if flag is False:
        return None
    return flag or f.name.replace('_', '-')


def add_flags(parser, cls) -> None:
    """
    Add one flag per field of ``cls`` to ``parser`` (an argparse parser or group).

    Every flag defaults to None (not given: the config file's value stays); the values are
    checked by ``cls`` itself, so a bad one gets the same message from a flag as from a file.
    Booleans get ``--name`` / ``--no-name``; lists of integers take several values.
    """
    docs = field_docs(cls)
    for f in fields(cls):
        name = flag_name(f)
        if name is None:
            continue
        spec, (base, _) = spec_of(f), kind_of(f)
        text = f'{docs.get(f.name, "")} [{f.name}: {expected(f)}]'.replace('``', '')
        kwargs = {'dest': f.name, 'default': None, 'help': text.replace('%', '%%')}
        if base is bool:
            kwargs['action'] = argparse.BooleanOptionalAction
        else:
            kwargs['metavar'] = name.replace('-', '_').upper()
            kwargs['type'] = int if base == 'ints' else base
            if base == 'ints':
                kwargs.update(nargs='+', metavar='N')
            if spec.choices is not None and spec.check is None:
                kwargs.update(choices=spec.choices, metavar=None)
            elif spec.choices is not None:  # usual values; ``check`` accepts others too
                kwargs['metavar'] = '{' + ','.join(spec.choices) + ',...}'
        parser.add_argument(f'--{name}', **kwargs)


def flag_values(args, cls) -> dict:
    """Return ``{key: value}`` of the flags of ``cls`` given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(cls)
            if flag_name(f) is not None and getattr(args, f.name, None) is not None}
