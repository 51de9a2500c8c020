"""
Settings as dataclass fields: one source for defaults, ranges, checks and ROS parameters.

A settings dataclass (``OnlineConfig``, ``NodeConfig``) documents each field with a docstring
under it, as CleanRL's ``Args`` does, and gives its range, choices and whether it may change
while the adapter runs with :func:`setting`. :func:`settings_of` reads all of it back (the ROS
node declares its parameters from that, ``maml_robot/ros/params.py``), and :func:`check_fields`
validates an instance against it (called from ``__post_init__``). A plain field (``x: int =
3``) is a setting too: its type comes from its default, its description from its docstring.
"""

import ast
from dataclasses import dataclass, field, fields, MISSING
import functools
import inspect
import math
import numbers
import textwrap
from typing import Any, Optional

KINDS = (bool, int, float, str)
"""Types a setting can have (the scalar types of ROS parameters)."""


def setting(default, *, low=None, high=None, choices=None, live=False, ros=True):
    """
    Return a dataclass field with a default and its checks.

    :param low: smallest allowed value (numbers); None: no lower bound.
    :param high: largest allowed value (numbers); None: no upper bound.
    :param choices: the allowed values (strings).
    :param live: may change while the adapter runs (applied at once); else at the next
        configure.
    :param ros: declared as a ROS parameter of the adapter node (False: Python only).
    """
    return field(default=default, metadata={'low': low, 'high': high, 'choices': choices,
                                            'live': live, 'ros': ros})


@dataclass(frozen=True)
class Setting:
    """What a settings field declares: name, default, type, description, checks."""

    name: str
    default: Any
    kind: type
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None
    live: bool = False
    ros: bool = True

    def expected(self) -> str:
        """Return what the setting accepts, for messages: 'float in [0.0, 1.0]'."""
        text = self.kind.__name__
        if self.low is not None or self.high is not None:
            text += f' in [{self.low}, {self.high}]'
        if self.choices:
            text += ' (one of ' + ', '.join(c if c else "''" for c in self.choices) + ')'
        return text

    def check(self, value):
        """Return ``value`` if it is of this setting's type, range and choices; else ValueError."""
        ok = isinstance(value, self.kind)
        if self.kind in (int, float):       # numpy numbers too, never a bool
            ok = isinstance(value, numbers.Integral if self.kind is int else numbers.Real) \
                and not isinstance(value, bool)
            value = self.kind(value) if ok else value
        if ok and self.kind is float:
            ok = math.isfinite(value) or (self.high is None and value == math.inf)
        if ok and self.low is not None:
            ok = value >= self.low
        if ok and self.high is not None:
            ok = value <= self.high
        if ok and self.choices:
            ok = value in self.choices
        if not ok:
            raise ValueError(f'{self.name} must be {self.expected()}, got {value!r}')
        return value


def field_docstrings(cls) -> dict:
    """Return ``{field: docstring}`` of the string literals written under a class's fields."""
    docs = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):       # no source (built in, or made at run time)
            continue
        body = ast.parse(source).body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
                    and isinstance(nxt.value.value, str):
                docs[node.target.id] = ' '.join(nxt.value.value.split())
    return docs


@functools.lru_cache(maxsize=None)
def settings_of(cls) -> tuple:
    """
    Return the :class:`Setting` of every field of the dataclass ``cls``, in field order.

    TypeError names a field whose default is not a bool, int, float or str (mark it
    ``setting(..., ros=False)`` only if it is also not meant to be checked here).
    """
    docs = field_docstrings(cls)
    out = []
    for f in fields(cls):
        meta = f.metadata
        if f.default is MISSING or type(f.default) not in KINDS:
            raise TypeError(f'{cls.__name__}.{f.name}: a setting needs a default of type '
                            f'bool, int, float or str, got {f.default!r}')
        choices = meta.get('choices')
        out.append(Setting(name=f.name, default=f.default, kind=type(f.default),
                           description=docs.get(f.name, f.name.replace('_', ' ')),
                           low=meta.get('low'), high=meta.get('high'),
                           choices=tuple(choices) if choices else None,
                           live=bool(meta.get('live', False)), ros=meta.get('ros', True)))
    return tuple(out)


def check_fields(obj) -> None:
    """Check every field of the settings dataclass ``obj``; ValueError names the first bad one."""
    for spec in settings_of(type(obj)):
        value = spec.check(getattr(obj, spec.name))
        if value is not getattr(obj, spec.name):       # an int given for a float setting
            object.__setattr__(obj, spec.name, value)
