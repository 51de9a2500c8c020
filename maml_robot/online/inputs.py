"""Live inputs of the adapter: plausibility of joint states, and one control step's inputs."""

from dataclasses import dataclass
import math
import threading
from typing import Optional

from maml_robot.observation import RobotState
import numpy as np

POSITION_MARGIN = 1.0
"""Slack beyond a joint's limits (rad, or m for prismatic joints), plus a quarter of its range:
calibration offsets, noise and soft limits stay well inside it, a broken encoder does not."""
CONTINUOUS_BOUND = 1e4
"""Largest plausible |position| of a continuous joint (no limits): about 1600 turns."""
VELOCITY_FACTOR = 10.0
"""A joint speed beyond this multiple of the URDF velocity limit (plus VELOCITY_MARGIN) is a
broken sensor, not a fast joint. PyBullet does not enforce URDF velocity limits, so simulated
robots exceed them: under bang-bang random actions on the test and OOD tasks the largest
|velocity| / limit measured was 0.86 (reacher), 6.7 (kuka_reach), 3.0 (cheetah), 3.9
(quadruped), 0.59 (a1_walk); a real robot's drivers keep it below 1."""
VELOCITY_MARGIN = 1.0
"""Added to the velocity bound (rad/s, m/s), for joints with small velocity limits."""
UNLIMITED_VELOCITY_BOUND = 1e4
"""Largest plausible |velocity| of a joint without a velocity limit (rad/s, m/s)."""


def position_bounds(limits) -> np.ndarray:
    """Return (J, 2) plausible lower, upper positions for (J, 2) joint limits (±inf ok)."""
    limits = np.asarray(limits, dtype=np.float64)
    lower, upper = limits[:, 0], limits[:, 1]
    finite = np.isfinite(lower) & np.isfinite(upper)
    span = np.where(finite, upper - lower, 0.0)
    margin = POSITION_MARGIN + 0.25 * span
    lo = np.where(finite, lower - margin, -CONTINUOUS_BOUND)
    hi = np.where(finite, upper + margin, CONTINUOUS_BOUND)
    return np.stack([lo, hi], axis=1)


def velocity_bounds(limits) -> np.ndarray:
    """Return (J,) largest plausible |velocity| for (J,) URDF velocity limits (inf: none)."""
    limits = np.asarray(limits, dtype=np.float64)
    return np.where(np.isfinite(limits), VELOCITY_FACTOR * limits + VELOCITY_MARGIN,
                    UNLIMITED_VELOCITY_BOUND)


def check_joint_positions(position, joint_names, bounds) -> None:
    """
    Raise ValueError naming the first joint whose position is outside ``bounds``.

    NaN passes here: the adapter holds on any non-finite observation and counts it.
    :param position: (J,) measured positions in ``joint_names`` order.
    :param bounds: (J, 2) from :func:`position_bounds`, or None to skip the check.
    """
    if bounds is None:
        return
    position = np.asarray(position, dtype=np.float64)
    outside = (position < bounds[:, 0]) | (position > bounds[:, 1])
    if np.any(outside):
        j = int(np.flatnonzero(outside)[0])
        raise ValueError(f'joint {joint_names[j]!r} position {position[j]:.6g} is outside the '
                         f'plausible range [{bounds[j, 0]:.6g}, {bounds[j, 1]:.6g}] (joint '
                         'limits plus margin); check the encoder, its calibration and units')


def check_joint_velocities(velocity, joint_names, bounds) -> None:
    """
    Raise ValueError naming the first joint whose |velocity| is above ``bounds``.

    NaN passes here (held as a bad observation). :param bounds: (J,) from
    :func:`velocity_bounds`, or None to skip the check.
    """
    if bounds is None:
        return
    velocity = np.asarray(velocity, dtype=np.float64)
    over = np.abs(velocity) > bounds
    if np.any(over):
        j = int(np.flatnonzero(over)[0])
        raise ValueError(f'joint {joint_names[j]!r} velocity {velocity[j]:.6g} is beyond the '
                         f'plausible speed {bounds[j]:.6g} ({VELOCITY_FACTOR:g} x the URDF '
                         'velocity limit + margin); check the encoder, its filter and units')


class PlausibleJoints:
    """The plausibility check of one robot's joint states (bounds from an AdapterSpec)."""

    def __init__(self, spec):
        """Take the joint names, position and velocity limits of ``spec`` (None: unchecked)."""
        self.names = spec.joint_names
        limits, speeds = spec.position_limits, spec.velocity_limits
        self.position_bounds = None if limits is None else position_bounds(limits)
        self.velocity_bounds = None if speeds is None else velocity_bounds(speeds)

    def check(self, position, velocity) -> None:
        """Raise ValueError naming the joint whose position or velocity is implausible."""
        check_joint_positions(position, self.names, self.position_bounds)
        check_joint_velocities(velocity, self.names, self.velocity_bounds)


@dataclass
class StepInputs:
    """What one control step acts on."""

    state: Optional[RobotState]   # None: no complete state yet (or the last one was broken)
    age: float                    # s since the joint state arrived (inf without one)
    reward: Optional[float]       # the reward topic's last value (None: computed internally)
    episode_start: bool           # an episode_start message came since the last step
    received: Optional[float]     # perf_counter when the joint state arrived (latency)
    joint_position: Optional[np.ndarray] = None   # (J,) the last plausible joint positions,
    #                               also when ``state`` is None for want of a goal or odometry


class LiveInputs:
    """
    The latest inputs of the control step: joint state, goal, odometry, rewards, resets.

    Message callbacks put, the control step takes (thread-safe). With a reward topic the
    step's reward is the mean of the rewards that came since the last step (the last one when
    none came), and a state waits for its step's reward before it triggers a command.
    """

    def __init__(self, needs=(), reward_topic: bool = False):
        """:param needs: extra sources the observation needs ('goal', 'odom')."""
        self.needs, self.reward_topic = tuple(needs), reward_topic
        self._lock = threading.Lock()
        self._joints = self._goal = self._odom = None
        self._joints_time = self._received = self._last_reward = None
        self._rewards = []
        self._episode_start = False

    def waiting_for_reward(self) -> bool:
        """Return True when a state must wait for this step's reward (reward topic, none yet)."""
        with self._lock:
            return self.reward_topic and not self._rewards

    def put_joints(self, joints, now: float, received: float):
        """Keep (position, velocity) measured at ``now`` (None: the state was broken)."""
        with self._lock:
            self._joints, self._joints_time, self._received = joints, now, received

    def put_goal(self, goal):
        """Keep the (3,) goal."""
        with self._lock:
            self._goal = goal

    def put_odom(self, fields):
        """Keep the RobotState base fields of an odometry message (None: broken)."""
        with self._lock:
            self._odom = fields

    def put_reward(self, reward: float):
        """Add one reward of this step."""
        with self._lock:
            self._rewards.append(float(reward))

    def put_episode_start(self):
        """Mark that a new episode starts at the next step."""
        with self._lock:
            self._episode_start = True

    def take(self, now: float) -> StepInputs:
        """Return this step's inputs and clear the per-step ones (rewards, episode start)."""
        with self._lock:
            joints, stamp, goal, odom = self._joints, self._joints_time, self._goal, self._odom
            rewards, self._rewards = self._rewards, []
            start, self._episode_start = self._episode_start, False
            received = self._received
        if rewards:
            self._last_reward = float(np.mean(rewards))
        reward = self._last_reward if self.reward_topic else None
        if joints is None or ('goal' in self.needs and goal is None) or (
                'odom' in self.needs and odom is None):
            return StepInputs(None, math.inf, reward, start, received,
                              None if joints is None else joints[0])
        state = RobotState(joint_position=joints[0], joint_velocity=joints[1], goal=goal,
                           **(odom or {}))
        return StepInputs(state, now - stamp, reward, start, received, joints[0])
