"""
Typed reads of a scenario's YAML mapping whose errors name the file, the dotted key and the fix.

Every section of ``maml_robot.scenario`` (and ``scenario_control``, ``scenario_dynamics``,
``scenario_kinematics``) reads through one :class:`Reader`; its ``fail`` raises the
:class:`ScenarioError`.
"""

import math

import numpy as np


class ScenarioError(ValueError):
    """A malformed scenario: names the file, the dotted key and what was expected."""

    def __init__(self, file, key, expected, got=None):
        self.file, self.key, self.expected = str(file), key, expected
        msg = f'{file}: {key}: expected {expected}'
        if got is not None:
            msg += f', got {got!r}'
        super().__init__(msg)


class Reader:
    """Typed access to the YAML mapping with errors that name the file and dotted key."""

    def __init__(self, file):
        self.file = file

    def fail(self, key, expected, got=None):
        raise ScenarioError(self.file, key, expected, got)

    def mapping(self, data, key, allowed=None, required=()):
        if not isinstance(data, dict):
            self.fail(key, 'a mapping', data)
        for k in data:
            if allowed is not None and k not in allowed:
                self.fail(f'{key}.{k}' if key else k, f'one of the known keys {list(allowed)}',
                          'unknown key')
        for k in required:
            if k not in data:
                self.fail(f'{key}.{k}' if key else k, 'this key to be present', 'missing')
        return data

    def number(self, value, key, lo=-math.inf, hi=math.inf, strict_lo=False):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            self.fail(key, 'a finite number', value)
        if value < lo or value > hi or (strict_lo and value <= lo):
            bound = f'> {lo}' if strict_lo else f'>= {lo}'
            self.fail(key, f'a number {bound} and <= {hi}', value)
        return float(value)

    def integer(self, value, key, lo=None, hi=None):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, 'an integer', value)
        if lo is not None and value < lo:
            self.fail(key, f'an integer >= {lo}', value)
        if hi is not None and value > hi:
            self.fail(key, f'an integer <= {hi}', value)
        return value

    def range_(self, value, key, lo=-math.inf):
        """Return ((lo, hi), ...) from [lo, hi] or a list of such intervals."""
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return tuple(self.range_(v, f'{key}[{i}]', lo)[0] for i, v in enumerate(value))
        if not isinstance(value, list) or len(value) != 2:
            self.fail(key, '[lo, hi] or a list of [lo, hi] intervals', value)
        a = self.number(value[0], f'{key}[0]', lo=lo)
        b = self.number(value[1], f'{key}[1]', lo=lo)
        if a > b:
            self.fail(key, '[lo, hi] with lo <= hi', value)
        return ((a, b),)

    def vector(self, value, key, n):
        if not isinstance(value, list) or len(value) != n:
            self.fail(key, f'a list of {n} numbers', value)
        return tuple(self.number(v, f'{key}[{i}]') for i, v in enumerate(value))

    def per_joint(self, value, key, names, default):
        """Read a number for all joints, or a mapping joint -> number (others: ``default``)."""
        if isinstance(value, dict):
            for k in value:
                if k not in names:
                    self.fail(f'{key}.{k}', f'a controlled joint {list(names)}', k)
            return np.array([self.number(value.get(n, default), f'{key}.{n}') for n in names])
        return np.full(len(names), self.number(value, key))

    def names(self, value, key, known, what):
        if not isinstance(value, list) or not value:
            self.fail(key, f'a non-empty list of {what}', value)
        for i, v in enumerate(value):
            if v not in known:
                self.fail(f'{key}[{i}]', f'one of {sorted(known)}', v)
        if len(set(value)) != len(value):
            self.fail(key, f'distinct {what}', value)
        return tuple(value)
