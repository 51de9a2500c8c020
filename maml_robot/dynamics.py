"""Task: the dynamics parameters of one robot instance, and their sampling per split."""

from dataclasses import asdict, dataclass, fields

import numpy as np

PER_JOINT = ('motor_strength', 'motor_direction', 'calibration_offset')


@dataclass(frozen=True)
class Task:
    """
    Dynamics of one robot instance; a value (hashable, compared field by field).

    Per-joint tuples are in scenario joint order; an empty tuple means nominal for every joint.
    """

    mass_scale: float = 1.0
    """Scale of every link's mass and inertia."""
    payload: float = 0.0
    """Extra mass (kg) on the scenario's payload link (end effector / torso)."""
    damping_scale: float = 1.0
    """Scale of every controlled joint's viscous damping (URDF <dynamics damping>)."""
    friction_scale: float = 1.0
    """Scale of the ground's lateral friction."""
    motor_strength: tuple = ()
    """Per joint: effort produced per unit of commanded effort (1 = nominal)."""
    motor_direction: tuple = ()
    """Per joint: +1, or -1 for a reversed (miswired) motor."""
    calibration_offset: tuple = ()
    """Per joint: offset (rad or m) added to the MEASURED position."""
    dead_joints: tuple = ()
    """Names of joints whose motor produces no torque at all."""
    latency_steps: int = 0
    """Whole control steps between a command and its effect."""
    obs_noise_std: float = 0.0
    """Std of Gaussian noise on measured joint positions (rad) and velocities (rad/s)."""

    def __post_init__(self):
        """Normalize types so that equal tasks compare and hash equal."""
        for f in ('mass_scale', 'payload', 'damping_scale', 'friction_scale', 'obs_noise_std'):
            object.__setattr__(self, f, float(getattr(self, f)))
        object.__setattr__(self, 'motor_strength', tuple(float(v) for v in self.motor_strength))
        object.__setattr__(self, 'motor_direction', tuple(int(v) for v in self.motor_direction))
        object.__setattr__(self, 'calibration_offset',
                           tuple(float(v) for v in self.calibration_offset))
        object.__setattr__(self, 'dead_joints', tuple(sorted(str(v) for v in self.dead_joints)))
        object.__setattr__(self, 'latency_steps', int(self.latency_steps))
        if any(d not in (1, -1) for d in self.motor_direction):
            raise ValueError(f'motor_direction must hold +1 or -1, got {self.motor_direction}')
        for f in ('mass_scale', 'damping_scale', 'friction_scale'):
            if not getattr(self, f) > 0:
                raise ValueError(f'{f} must be > 0, got {getattr(self, f)}')
        if self.payload < 0 or self.obs_noise_std < 0 or self.latency_steps < 0 \
                or any(s < 0 for s in self.motor_strength):
            raise ValueError('payload, obs_noise_std, latency_steps and motor_strength must be '
                             f'>= 0, got {self}')

    def to_dict(self):
        """Return a JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data):
        """Build a Task from ``to_dict()`` output; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f'unknown Task fields {sorted(unknown)}; known: {sorted(known)}')
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def nominal(cls, scenario):
        """Return the nominal task with every per-joint field filled in."""
        j = len(scenario.joint_names)
        return cls(motor_strength=(1.0,) * j, motor_direction=(1,) * j,
                   calibration_offset=(0.0,) * j)

    def check(self, scenario):
        """Raise ValueError unless this task fits ``scenario``'s joints; return self."""
        j = len(scenario.joint_names)
        for f in PER_JOINT:
            n = len(getattr(self, f))
            if n not in (0, j):
                raise ValueError(f'Task.{f} has {n} values; scenario {scenario.name!r} has {j} '
                                 f'joints {scenario.joint_names} (or give none for nominal)')
        for name in self.dead_joints:
            if name not in scenario.joint_names:
                raise ValueError(f'dead joint {name!r} is not a controlled joint of '
                                 f'{scenario.name!r}: {scenario.joint_names}')
        return self

    def joint_array(self, name, num_joints):
        """Return a per-joint field as an array (J,), filling nominal values when empty."""
        values = getattr(self, name)
        if values:
            return np.asarray(values, dtype=float)
        return np.full(num_joints, 0.0 if name == 'calibration_offset' else 1.0)

    def describe(self, scenario):
        """Return a short text of what differs from nominal (for tables and logs)."""
        parts = []
        for f in ('mass_scale', 'damping_scale', 'friction_scale'):
            if getattr(self, f) != 1.0:
                parts.append(f'{f.split("_")[0]} x{getattr(self, f):.2f}')
        if self.payload:
            parts.append(f'payload {self.payload:.2f}kg')
        names = scenario.joint_names
        for i, n in enumerate(names):
            short = n.replace('_joint', '')
            bits = []
            if n in self.dead_joints:
                bits.append('DEAD')
            else:
                if self.motor_direction and self.motor_direction[i] < 0:
                    bits.append('REV')
                if self.motor_strength and abs(self.motor_strength[i] - 1) > 1e-9:
                    bits.append(f'x{self.motor_strength[i]:.2f}')
            if self.calibration_offset and self.calibration_offset[i]:
                bits.append(f'{self.calibration_offset[i]:+.2f}rad')
            if bits:
                parts.append(f'{short}:' + ','.join(bits))
        if self.latency_steps:
            parts.append(f'latency {self.latency_steps}')
        if self.obs_noise_std:
            parts.append(f'noise {self.obs_noise_std:.3f}')
        return ' '.join(parts) or 'nominal'


def _uniform(rng, intervals, size=None):
    """Draw uniformly over the union of ``intervals`` ((lo, hi), ...)."""
    lo = np.array([a for a, _ in intervals])
    width = np.array([b - a for a, b in intervals])
    if len(intervals) == 1:
        return lo[0] + width[0] * rng.random(size)
    total = width.sum()
    probs = width / total if total > 0 else np.full(len(intervals), 1 / len(intervals))
    pick = rng.choice(len(intervals), size=size, p=probs)
    return lo[pick] + width[pick] * rng.random(size)


def sample_task(scenario, spec, rng):
    """Draw one Task from the split ``spec`` (a SplitSpec) with ``rng``."""
    j = len(scenario.joint_names)
    r = spec.ranges
    values = {}
    for f in ('mass_scale', 'payload', 'damping_scale', 'friction_scale', 'obs_noise_std'):
        if f in r:
            values[f] = float(_uniform(rng, r[f]))
    strength = _uniform(rng, r['motor_strength'], j) if 'motor_strength' in r else np.ones(j)
    offset = (_uniform(rng, r['calibration_offset'], j) if 'calibration_offset' in r
              else np.zeros(j))
    direction = np.where(rng.random(j) < spec.motor_reversed, -1, 1)
    dead = ()
    if spec.dead_joints and rng.random() < spec.dead_probability:
        dead = (spec.dead_joints[int(rng.integers(len(spec.dead_joints)))],)
    lo, hi = spec.latency_steps
    latency = int(rng.integers(lo, hi + 1)) if hi > lo else lo
    return Task(motor_strength=tuple(strength), motor_direction=tuple(direction),
                calibration_offset=tuple(offset), dead_joints=dead, latency_steps=latency,
                **values)


def sample_tasks(scenario, n, split='train', seed=None):
    """
    Return ``n`` tasks of ``split``.

    Fixed splits (``test``, ``ood``: a size and seed in the scenario) return the first ``n`` of
    the same list every call, whatever ``seed``; ``n=None`` returns all of them. Sampled splits
    (``train``) draw from ``seed`` (an int, a numpy Generator, or None for fresh entropy).
    """
    if split not in scenario.splits:
        raise ValueError(f'unknown split {split!r}; scenario {scenario.name!r} has '
                         f'{sorted(scenario.splits)}')
    spec = scenario.splits[split]
    if spec.fixed:
        n = spec.size if n is None else n
        if not 0 <= n <= spec.size:
            raise ValueError(f'split {split!r} holds {spec.size} fixed tasks; asked for {n}')
        rng = np.random.default_rng(spec.seed)
        return [sample_task(scenario, spec, rng) for _ in range(spec.size)][:n]
    if n is None or n < 0:
        raise ValueError(f'give the number of {split!r} tasks to sample (n >= 0), got {n}')
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return [sample_task(scenario, spec, rng) for _ in range(n)]
