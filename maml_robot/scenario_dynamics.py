"""
A scenario's dynamics section: how the tasks of each split (train, test, ood) are drawn.

Per split: continuous ranges (a union of [lo, hi] intervals per parameter), the probability of
a reversed motor, the candidate dead joints and their probability, a latency range; ``test`` and
``ood`` are fixed lists (``size``, ``seed``). A range over a quantity the robot lacks (zero URDF
damping, no ground) loads with a ScenarioWarning. ``r`` is the scenario's reader: its ``fail``
raises the ScenarioError that names the file and key.
"""

from dataclasses import dataclass
import math
import warnings

# Per-split dynamics parameters: continuous ranges, then the special ones.
RANGE_PARAMS = ('mass_scale', 'payload', 'damping_scale', 'friction_scale', 'motor_strength',
                'calibration_offset', 'obs_noise_std')
SPLIT_KEYS = RANGE_PARAMS + ('motor_reversed', 'dead_joint', 'latency_steps')

MAX_SPLIT_SIZE = 100_000
"""Upper bound of a fixed split's ``size`` (tasks are drawn and held in memory up front)."""


@dataclass(frozen=True)
class SplitSpec:
    """How the tasks of one split are drawn; ``size``/``seed`` set for fixed splits."""

    name: str
    size: int | None
    seed: int | None
    ranges: dict          # param -> tuple of (lo, hi) intervals (uniform over their union)
    motor_reversed: float  # probability that each joint's motor is reversed
    dead_joints: tuple     # candidate joints; one of them is dead with dead_probability
    dead_probability: float
    latency_steps: tuple   # (lo, hi) inclusive, whole control steps

    @property
    def fixed(self):
        """Return True when the split is a fixed list of tasks (test, ood)."""
        return self.size is not None


def _split(r, name, spec, names, splits_data):
    """Return the SplitSpec of one split mapping (``ranges`` may name another split)."""
    key = f'dynamics.splits.{name}'
    r.mapping(spec, key, ('size', 'seed', 'ranges'), required=('ranges',))
    size = seed = None
    if 'size' in spec or 'seed' in spec:
        if 'size' not in spec or 'seed' not in spec:
            r.fail(key, 'both size and seed for a fixed split (or neither for a sampled one)',
                   sorted(spec))
        size = r.integer(spec['size'], f'{key}.size', lo=1, hi=MAX_SPLIT_SIZE)
        seed = r.integer(spec['seed'], f'{key}.seed', lo=0)
    ranges = spec['ranges']
    rkey = f'{key}.ranges'
    if isinstance(ranges, str):
        other = splits_data.get(ranges)
        if ranges == name or not isinstance(other, dict) or isinstance(other.get('ranges'), str):
            r.fail(rkey, 'a mapping of ranges or the name of another split that has one', ranges)
        ranges = other['ranges']
        rkey = f'dynamics.splits.{spec["ranges"]}.ranges'
    r.mapping(ranges, rkey, SPLIT_KEYS)
    lows = {'mass_scale': 0.0, 'payload': 0.0, 'damping_scale': 0.0, 'friction_scale': 0.0,
            'motor_strength': 0.0, 'obs_noise_std': 0.0}
    parsed = {p: r.range_(ranges[p], f'{rkey}.{p}', lows.get(p, -math.inf))
              for p in RANGE_PARAMS if p in ranges}
    reversed_p = r.number(ranges.get('motor_reversed', 0.0), f'{rkey}.motor_reversed', 0, 1)
    dead, dead_p = (), 0.0
    if 'dead_joint' in ranges:
        d = r.mapping(ranges['dead_joint'], f'{rkey}.dead_joint', ('joints', 'probability'),
                      required=('joints', 'probability'))
        dead = r.names(d['joints'], f'{rkey}.dead_joint.joints', set(names), 'controlled joints')
        dead_p = r.number(d['probability'], f'{rkey}.dead_joint.probability', 0, 1)
    latency = (0, 0)
    if 'latency_steps' in ranges:
        lat = ranges['latency_steps']
        if not isinstance(lat, list) or len(lat) != 2:
            r.fail(f'{rkey}.latency_steps', '[lo, hi] whole control steps', lat)
        latency = (r.integer(lat[0], f'{rkey}.latency_steps[0]', 0),
                   r.integer(lat[1], f'{rkey}.latency_steps[1]', 0))
        if latency[0] > latency[1]:
            r.fail(f'{rkey}.latency_steps', '[lo, hi] with lo <= hi', lat)
    return SplitSpec(name, size, seed, parsed, reversed_p, dead, dead_p, latency)


def dynamics_section(r, data, names, model):
    """Return (payload_link, {split name: SplitSpec}) of the validated dynamics section."""
    dyn = r.mapping(data['dynamics'], 'dynamics', ('payload_link', 'splits'),
                    required=('splits',))
    payload_link = dyn.get('payload_link')
    if payload_link is not None and payload_link not in model.links:
        r.fail('dynamics.payload_link', f'a link of the URDF {sorted(model.links)}', payload_link)
    splits_data = r.mapping(dyn['splits'], 'dynamics.splits', required=('train', 'test', 'ood'))
    # Splits with their own ranges first, so that errors name the split that defines them.
    order = sorted(splits_data, key=lambda n: isinstance(
        splits_data[n].get('ranges') if isinstance(splits_data[n], dict) else None, str))
    splits = {n: _split(r, n, splits_data[n], names, splits_data) for n in order}
    if splits['train'].fixed:
        r.fail('dynamics.splits.train', 'a sampled split (no size/seed)', 'size/seed given')
    for n in ('test', 'ood'):
        if not splits[n].fixed:
            r.fail(f'dynamics.splits.{n}', 'a fixed split with size and seed', 'missing')
    if payload_link is None and any('payload' in s.ranges for s in splits.values()):
        r.fail('dynamics.payload_link', 'a link to carry the payload ranges', None)
    _warn_inert_ranges(r, splits, [model.joints[n] for n in names], data)
    return payload_link, splits


class ScenarioWarning(UserWarning):
    """A scenario that loads but does not do what it says (e.g. a range that changes nothing)."""


def _warn_inert_ranges(r, splits, joints, data):
    """Warn about randomized quantities that are zero (or absent) on this robot."""
    inert = {'damping_scale': ('every controlled joint has zero <dynamics damping> in the URDF',
                               all(not j.damping for j in joints)),
             'friction_scale': ('the scenario has no ground (sim.ground: false)',
                                data['sim'].get('ground', True) is False)}
    for param, (why, applies) in inert.items():
        split = next((n for n, s in splits.items() if param in s.ranges), None)
        if applies and split is not None:
            warnings.warn(ScenarioWarning(
                f'{r.file}: dynamics.splits.{split}.ranges.{param} varies a quantity that is '
                f'zero here ({why}): it changes nothing; remove it or give the robot one'),
                stacklevel=4)
