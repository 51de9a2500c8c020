"""
The dynamics and sensor model of a Task in the simulator, and the goals of an episode.

What a ``maml_robot.dynamics.Task`` does: the body's masses, inertias and joint damping
(``body_parameters``), the motors' strength, direction and dead joints (``motor_gains``), whole
control steps of command latency (``CommandDelay``) and the encoders' calibration offsets and
noise (``Sensors``). Plain Python and numpy: each piece is tested without PyBullet; the World
applies them to a Robot.
"""

import math
import operator

import numpy as np


def body_parameters(task, nominal, payload_index):
    """
    Return (masses, damping) under ``task`` from a Robot's ``nominal`` dynamics.

    masses: {link: (mass, inertia diagonal)}, scaled by ``task.mass_scale``, the payload on the
    payload link; damping: per controlled joint, scaled by ``task.damping_scale``.
    """
    masses = {}
    for link, (mass, inertia) in nominal['masses'].items():
        extra = task.payload if link == payload_index else 0.0
        masses[link] = (mass * task.mass_scale + extra, [v * task.mass_scale for v in inertia])
    return masses, [d * task.damping_scale for d in nominal['damping']]


def motor_gains(scenario, task):
    """Return the motors' effort per commanded effort (J,): strength x direction, 0 if dead."""
    j = len(scenario.joint_names)
    alive = np.array([0.0 if n in task.dead_joints else 1.0 for n in scenario.joint_names])
    return task.joint_array('motor_strength', j) * task.joint_array('motor_direction', j) * alive


class CommandDelay:
    """
    A FIFO of ``steps`` whole control steps between a command and its effect.

    :param steps: the latency in control steps (0: a command acts at once).
    :param size: the length of a command (joints).
    """

    def __init__(self, steps, size):
        self.size = size
        self._buffer = [[0.0] * size for _ in range(steps + 1)]
        self._position = 0

    def clear(self):
        """Forget the commands in flight (zeros act until the first command comes out)."""
        self._buffer = [[0.0] * self.size for _ in self._buffer]
        self._position = 0

    def push(self, command):
        """Enter ``command`` (a list); return the one that acts now (the oldest)."""
        buf = self._buffer
        if len(buf) == 1:
            return command
        buf[self._position] = command
        self._position = (self._position + 1) % len(buf)
        return buf[self._position]


class Sensors:
    """
    The joint encoders: measured = true + calibration offset (positions only) + noise.

    :param offsets: (J,) calibration offsets added to the measured positions.
    :param noise_std: std of the Gaussian noise on positions and velocities (0: none).
    """

    def __init__(self, offsets, noise_std):
        j = len(offsets)
        self.position_offsets = [float(v) for v in offsets]
        self._offsets = np.concatenate([np.asarray(offsets, dtype=float), np.zeros(j)]).tolist()
        self.noise_std = noise_std
        self._noise = np.empty(2 * j)   # filled in place by each draw (no allocation per step)

    def measure(self, q, qd, rng):
        """
        Return the measured (positions, velocities), lists, of the true ``q``, ``qd`` (lists).

        One draw of ``rng`` for positions then velocities (the same numbers as two draws).
        """
        std = self.noise_std
        if std > 0:
            noise = rng.standard_normal(out=self._noise).tolist()
            measured = [(v + o) + std * n for v, o, n in zip(q + qd, self._offsets, noise)]
        else:
            measured = list(map(operator.add, q + qd, self._offsets))
        j = len(q)
        return measured[:j], measured[j:]


def sample_goal(region, rng):
    """
    Return a 3-D goal [x, y, z] drawn with ``rng`` from a scenario's goal region.

    box: uniform in the box; shell: a uniform direction at a distance uniform in [lo, hi].
    """
    if region['type'] == 'box':
        return rng.uniform(region['low'], region['high']).tolist()
    direction = rng.standard_normal(3)
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    radius = rng.uniform(*region['radius'])
    return (np.asarray(region['center']) + radius * direction).tolist()


def draw_goal(scenario, rng):
    """
    Return an episode's goal [x, y, z] drawn with ``rng``, or None for a scenario without goals.

    Planar reacher: at a distance in ``goal.radius`` from ``kinematics.origin``, in its plane;
    3-D: from the goal region (``kinematics.base_link`` frame).
    """
    if scenario.goal_radius is not None:
        radius = rng.uniform(*scenario.goal_radius)
        angle = rng.uniform(-math.pi, math.pi)
        x0, y0, z0 = scenario.kinematics['origin']   # floats (the scenario's reader)
        return [x0 + radius * math.cos(angle), y0 + radius * math.sin(angle), z0]
    if scenario.goal_region is not None:
        return sample_goal(scenario.goal_region, rng)
    return None
