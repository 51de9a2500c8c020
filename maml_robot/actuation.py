"""
How a normalized action becomes a joint command, and what holds a robot safely: one per mode.

The simulator and the ROS adapter both use this, so the robot sees in deployment exactly what it
saw in training. Nothing here knows about PyBullet, torch or ROS.

- ``torque``: the command is an effort, ``action * action_scale`` (N·m, N for prismatic joints),
  within the effort limit. The safe hold is zero effort (a robot that stays up unpowered), or
  (``hold: gravity``, a fixed base) the efforts that cancel gravity at the current joint
  positions, from the URDF's nominal masses (``maml_robot.gravity``): an arm stays where it is.
- ``position``: the command is a joint position target, ``default_position + action *
  action_scale`` (the legged-robot convention), within the joint's position limits. A PD loop at
  the physics rate (on a real robot: the motor drivers or ros2_control's controller) turns it
  into ``kp * (target - q) - kd * qd``, clamped to the effort limit. The safe hold is a pose:
  the default pose, or the last commanded one (``hold: last``); never a collapse.
- ``velocity``: the command is a joint velocity, ``action * action_scale`` (rad/s, m/s), within
  the URDF velocity limit (ros2_control's velocity interface, forward_velocity_controller). A
  velocity loop at the physics rate (on a real robot: the drive) turns it into ``kv * (target -
  qd)``, clamped to the effort limit. The safe hold is zero velocity (``hold: stop``): the
  drive brakes. Under gravity a joint then creeps at ``load / kv`` unless the drive's own loop
  holds position.
"""

from dataclasses import dataclass

import numpy as np

MODES = ('torque', 'position', 'velocity')
HOLDS = {'torque': ('zero', 'gravity'), 'position': ('default', 'last'), 'velocity': ('stop',)}


@dataclass(frozen=True, eq=False)
class Actuation:
    """
    The actuator contract of one robot, arrays in scenario joint order.

    :param mode: 'torque', 'position' or 'velocity'.
    :param action_scale: (J,) command per unit of normalized action (N·m, rad / m, or rad/s).
    :param effort_limit: (J,) largest effort the actuator applies.
    :param position_limits: (J, 2) lower, upper joint positions (±inf for continuous joints).
    :param default_position: (J,) position mode: the target of a zero action.
    :param kp: (J,) position mode: stiffness of the PD loop (N·m / rad).
    :param kd: (J,) position mode: damping of the PD loop (N·m·s / rad).
    :param hold: the safe command: 'zero' or 'gravity' (torque), 'default' or 'last'
        (position), 'stop' (velocity).
    :param gravity: ``hold: gravity`` only: the robot's ``maml_robot.gravity.GravityModel``
        (``torques(q)`` gives the efforts (J,) that hold it still at positions q).
    :param kv: (J,) velocity mode: gain of the velocity loop (N·m·s / rad, N·s / m); None: 0.
    :param velocity_limit: (J,) largest commanded velocity (rad/s, m/s); None: no limit.
    """

    mode: str
    action_scale: np.ndarray
    effort_limit: np.ndarray
    position_limits: np.ndarray
    default_position: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    hold: str
    gravity: object = None
    kv: np.ndarray = None
    velocity_limit: np.ndarray = None

    def __post_init__(self):
        """Check the mode, the hold and the array sizes; the message says what to change."""
        j = len(self.action_scale)
        if self.kv is None:        # torque and position modes (and older snapshots): no loop
            object.__setattr__(self, 'kv', np.zeros(j))
        if self.velocity_limit is None:
            object.__setattr__(self, 'velocity_limit', np.full(j, np.inf))
        if self.mode not in MODES:
            raise ValueError(f'control mode must be one of {MODES}, got {self.mode!r}')
        if self.hold not in HOLDS[self.mode]:
            raise ValueError(f'hold for {self.mode} control must be one of '
                             f'{HOLDS[self.mode]}, got {self.hold!r}')
        if (self.hold == 'gravity') != (self.gravity is not None):
            raise ValueError("hold 'gravity' needs the robot's gravity model "
                             '(maml_robot.gravity.GravityModel), and only it takes one; got '
                             f'hold {self.hold!r} with gravity={self.gravity!r}')
        for name in ('effort_limit', 'default_position', 'kp', 'kd', 'kv', 'velocity_limit'):
            if np.shape(getattr(self, name)) != (j,):
                raise ValueError(f'actuation {name} must have {j} entries (one per joint), '
                                 f'got shape {np.shape(getattr(self, name))}')
        if np.shape(self.position_limits) != (j, 2):
            raise ValueError(f'actuation position_limits must be ({j}, 2), '
                             f'got {np.shape(self.position_limits)}')

    @property
    def is_position(self) -> bool:
        """Return True when commands are joint position targets."""
        return self.mode == 'position'

    @property
    def is_velocity(self) -> bool:
        """Return True when commands are joint velocities."""
        return self.mode == 'velocity'

    def _bounds(self):
        """Return (lower, upper) (J,) of a command: positions, velocities or efforts."""
        if self.is_position:
            return self.position_limits[:, 0], self.position_limits[:, 1]
        if self.is_velocity:
            return -self.velocity_limit, self.velocity_limit
        return -self.effort_limit, self.effort_limit

    def command(self, action) -> np.ndarray:
        """Return the joint command of a normalized action (both (J,)), within the limits."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        offset = self.default_position if self.is_position else 0.0
        return np.clip(offset + a * self.action_scale, *self._bounds())

    def hold_command(self, last=None, position=None) -> np.ndarray:
        """
        Return the safe command (J,) of the hold.

        Zero effort; the gravity-cancelling efforts at ``position``; the default pose; or the
        ``last`` safe pose. ``last`` is the last command actually sent (None before any);
        ``hold: last`` falls back to the default pose without one, or when it is not finite.
        ``position`` (J,) is where the joints are: the latest measured positions, and while the
        state stream is cut the last ones known (a watchdog hold keeps the arm where it was last
        seen; nothing better is known). ``hold: gravity`` commands zero effort without them (or
        when they are not finite): it has nothing to compensate against. The efforts come from
        the URDF's nominal masses (an unknown payload is not compensated) and are clamped to
        the effort limits. Velocity: zero velocity, which the drive brakes to.
        """
        if self.is_velocity:
            return np.zeros(len(self.action_scale))
        if not self.is_position:
            if self.hold == 'gravity' and position is not None \
                    and np.all(np.isfinite(position)):
                return self.clip_command(self.gravity.torques(position))
            return np.zeros(len(self.action_scale))
        if self.hold == 'last' and last is not None and np.all(np.isfinite(last)):
            return self.clip_command(last)
        return self.clip_command(self.default_position)

    def clip_command(self, command) -> np.ndarray:
        """Return ``command`` (J,) within the position, velocity or effort limits."""
        return np.clip(np.asarray(command, dtype=np.float64), *self._bounds())

    def normalized(self, command) -> np.ndarray:
        """Return the normalized action (J,) that ``command`` (J,) stands for (the inverse)."""
        c = np.asarray(command, dtype=np.float64)
        if self.is_position:
            return (c - self.default_position) / self.action_scale
        return c / self.action_scale

    def pd_effort(self, target, position, velocity) -> np.ndarray:
        """Return the PD loop's effort (J,) toward ``target``, clamped to the effort limit."""
        effort = self.kp * (np.asarray(target) - position) - self.kd * np.asarray(velocity)
        return np.clip(effort, -self.effort_limit, self.effort_limit)

    def velocity_effort(self, target, velocity) -> np.ndarray:
        """Return the velocity loop's effort (J,) ``kv (target - qd)``, within the effort limit."""
        effort = self.kv * (np.asarray(target) - np.asarray(velocity))
        return np.clip(effort, -self.effort_limit, self.effort_limit)

    def to_dict(self) -> dict:
        """Return a JSON-able dict (``from_dict`` rebuilds it)."""
        return {'mode': self.mode, 'hold': self.hold,
                'action_scale': self.action_scale.tolist(),
                'effort_limit': self.effort_limit.tolist(),
                'position_limits': [[float(v) for v in row] for row in self.position_limits],
                'default_position': self.default_position.tolist(),
                'kp': self.kp.tolist(), 'kd': self.kd.tolist(), 'kv': self.kv.tolist(),
                'velocity_limit': self.velocity_limit.tolist()}

    @classmethod
    def torque(cls, action_scale) -> 'Actuation':
        """Return torque actuation with effort limit = ``action_scale`` (older checkpoints)."""
        scale = np.asarray(action_scale, dtype=np.float64)
        zeros = np.zeros(len(scale))
        limits = np.tile([-np.inf, np.inf], (len(scale), 1))
        return cls(mode='torque', action_scale=scale, effort_limit=scale.copy(),
                   position_limits=limits, default_position=zeros, kp=zeros, kd=zeros,
                   hold='zero')

    @classmethod
    def from_dict(cls, data: dict, gravity=None) -> 'Actuation':
        """
        Rebuild from ``to_dict()``; ``hold: gravity`` needs its ``gravity`` model again.

        ``kv`` and ``velocity_limit`` may be missing (dicts written before velocity mode).
        """
        arrays = {k: np.asarray(data[k], dtype=np.float64) for k in (
            'action_scale', 'effort_limit', 'position_limits', 'default_position', 'kp', 'kd',
            'kv', 'velocity_limit') if k in data}
        return cls(mode=data['mode'], hold=data['hold'], gravity=gravity, **arrays)
