"""Fixed reference controllers (nominal and oracle) used by the showcase, tests and docs."""

import math

from maml_robot.dynamics import Task
from maml_robot.observation import observation_layout
from maml_robot.scenario_kinematics import solve_position
import numpy as np
import torch


def _oracle_gain(scenario, task):
    """Per joint 1 / (direction * strength), 0 for dead joints: undoes the task's motor faults."""
    j = len(scenario.joint_names)
    gain = task.joint_array('motor_direction', j) * task.joint_array('motor_strength', j)
    dead = np.array([n in task.dead_joints for n in scenario.joint_names])
    safe = np.where(np.abs(gain) > 1e-3, gain, 1e-3)
    return np.where(dead, 0.0, 1.0 / safe)


def _corrections(scenario, task):
    """Return (calibration offset (J,), command gain (J,)): none for the nominal controller."""
    j = len(scenario.joint_names)
    if task is None:
        return np.zeros(j), np.ones(j)
    return task.joint_array('calibration_offset', j), _oracle_gain(scenario, task)


class ReacherController:
    """
    Jacobian-transpose PD reaching controller on the observation (cos/sin, velocity, goal).

    It assumes the nominal dynamics; given ``task`` (an oracle) it removes the calibration
    offset from the measured angles and divides each command by the motor's sign x strength.

    :param scenario: a reaching scenario (planar_chain kinematics, cos/sin, velocity, goal).
    :param task: the true Task for the oracle; None for the nominal controller.
    :param kp: Cartesian stiffness (N/m).
    :param kd: joint damping gain (N·m·s/rad).
    """

    def __init__(self, scenario, task=None, kp=10.0, kd=0.01):
        layout = observation_layout(scenario)
        names = scenario.joint_names
        self.cos = [layout.index(f'cos[{n}]') for n in names]
        self.sin = [layout.index(f'sin[{n}]') for n in names]
        self.vel = [layout.index(f'joint_velocity[{n}]') for n in names]
        self.goal = [layout.index('goal.x'), layout.index('goal.y')]
        kin = scenario.kinematics
        self.chain, self.lengths = list(kin['chain_index']), kin['link_lengths']
        self.origin = np.asarray(kin['origin'][:2])
        self.effort = scenario.effort_limits
        self.offset, self.gain = _corrections(scenario, task)
        self.kp, self.kd = kp, kd

    def __call__(self, obs):
        """Return the normalized action (J,) for observation ``obs``."""
        q = np.arctan2(obs[self.sin], obs[self.cos]) - self.offset
        qd = obs[self.vel]
        goal = obs[self.goal]
        # Planar chain: tip and Jacobian columns (one per chain joint).
        angles = np.cumsum(q[self.chain])
        seg = np.stack([self.lengths * np.cos(angles), self.lengths * np.sin(angles)])  # (2, L)
        tip = self.origin + seg.sum(axis=1)
        jac = np.stack([-seg[1, ::-1].cumsum()[::-1], seg[0, ::-1].cumsum()[::-1]])  # (2, L)
        force = self.kp * (goal - tip)
        torque = np.zeros(len(q))
        torque[self.chain] = jac.T @ force
        torque -= self.kd * qd
        return np.clip(torque / self.effort * self.gain, -1.0, 1.0)


class GaitController:
    """
    PD tracking of a sinusoidal joint trajectory (one frequency, a phase per joint).

    Reads the measured joint positions and velocities from the observation. The oracle version
    removes the calibration offsets and divides each command by the motor's sign x strength.

    :param amplitude: rad around the middle of each joint's range.
    :param kp: normalized action per rad of tracking error.
    :param kd: normalized action per rad/s.
    """

    def __init__(self, scenario, task=None, amplitude=0.5, frequency_hz=2.0, kp=0.5, kd=0.02):
        layout = observation_layout(scenario)
        names = scenario.joint_names
        self.pos = [layout.index(f'joint_position[{n}]') for n in names]
        self.vel = [layout.index(f'joint_velocity[{n}]') for n in names]
        j = len(names)
        limits = np.nan_to_num(scenario.position_limits, posinf=0.0, neginf=0.0)
        self.center = limits.mean(axis=1)
        self.phase = -np.linspace(0, 2 * math.pi, j, endpoint=False)
        self.dt = scenario.control_period
        self.amplitude, self.omega = amplitude, 2 * math.pi * frequency_hz
        self.kp, self.kd = kp, kd
        self.offset, self.gain = _corrections(scenario, task)
        self.t = 0

    def __call__(self, obs):
        """Return the action for the next control step (the time advances with each call)."""
        ref = self.center + self.amplitude * np.sin(self.omega * self.t * self.dt + self.phase)
        self.t += 1
        q = obs[self.pos] - self.offset
        a = self.kp * (ref - q) - self.kd * obs[self.vel]
        return np.clip(a * self.gain, -1.0, 1.0)


class PolicyController:
    """
    A trained policy (a checkpoint's mean action) used as a fixed controller.

    The oracle version (given ``task``) removes the calibration offsets from the measured joint
    positions in the observation, so the policy sees the robot as if its sensors were nominal,
    and undoes what it can of the faults in its commands: in torque mode it divides each
    effort by the motor's sign x strength (the motors then produce the nominal efforts); in
    position mode it adds the offsets to the targets (the robot's PD tracks the encoder, so the
    TRUE pose is the one the policy wants), and a reversed or weak motor under the PD is left
    as it is (no target undoes it); in velocity mode it changes no command. Payload, masses,
    damping, friction and latency stay as the task has them; a dead joint stays dead. Needs an
    observation with ``joint_position`` (the legged robots); terms computed from the joint
    angles (the reacher's fingertip) cannot be corrected this way.

    :param checkpoint: a loaded :class:`~maml_robot.checkpoint.Checkpoint` of this scenario.
    """

    def __init__(self, checkpoint, scenario, task=None):
        layout = observation_layout(scenario)
        if list(checkpoint.observation_layout) != layout:
            raise ValueError(f'the checkpoint observes {list(checkpoint.observation_layout)}, '
                             f'scenario {scenario.name!r} {layout}: use a checkpoint trained on '
                             'this scenario')
        if task is not None and 'joint_position' not in scenario.observation:
            raise ValueError(f'scenario {scenario.name!r} does not observe joint_position, so '
                             'the oracle cannot correct its observation; use the reference '
                             'controller (no checkpoint) for it')
        names = scenario.joint_names
        self.pos = ([layout.index(f'joint_position[{n}]') for n in names]
                    if 'joint_position' in scenario.observation else [])
        self.offset, self.gain = _corrections(scenario, task)
        self.shift = np.zeros(len(names))       # added to the action (position-mode oracle)
        act = scenario.actuation
        if act.mode != 'torque':
            self.gain = np.ones(len(names))
        if act.mode == 'position':
            self.shift = self.offset / act.action_scale
        self.policy, self.params, self.torch = checkpoint.make_policy(), checkpoint.params, torch

    def __call__(self, obs):
        """Return the normalized action (J,) for observation ``obs``."""
        obs = np.array(obs, dtype=np.float32)
        if self.pos:
            obs[self.pos] -= self.offset
        with self.torch.no_grad():
            mean = self.policy.mean_action(self.params, self.torch.as_tensor(obs)[None])[0]
        return np.clip(mean.double().numpy() * self.gain + self.shift, -1.0, 1.0)


class PoseController:
    """
    Position mode's reference: command a pose and let the robot's PD loop track it.

    A 3-D reaching scenario commands the joint angles that put the tip on the goal (inverse
    kinematics of the URDF chain, solved once per goal); any other robot holds its default pose
    (a legged robot stands). The oracle version adds the task's calibration offsets to the
    targets, so the TRUE pose is the one wanted (the PD tracks the encoder, which reads true +
    offset); weak motors and payloads still make the PD sag, as on the robot.

    :param scenario: a position-mode scenario.
    :param task: the true Task for the oracle; None for the nominal controller.
    """

    def __init__(self, scenario, task=None):
        act = scenario.actuation
        self.default, self.scale = act.default_position, act.action_scale
        self.offset, _ = _corrections(scenario, task)
        self.chain = (scenario.kinematics or {}).get('chain') \
            if scenario.goal_region is not None else None
        self._goal, self._pose = None, self.default
        if self.chain is not None:
            layout = observation_layout(scenario)
            self.goal = [layout.index(f'goal.{a}') for a in 'xyz']
            self.cos = [layout.index(f'cos[{n}]') for n in scenario.joint_names]
            self.sin = [layout.index(f'sin[{n}]') for n in scenario.joint_names]

    def __call__(self, obs):
        """Return the normalized action (J,) whose target is the wanted pose."""
        if self.chain is not None:
            goal = np.asarray(obs)[self.goal]
            if self._goal is None or not np.allclose(goal, self._goal):
                self._goal, self._pose = goal, self._solve(goal)
        return np.clip((self._pose + self.offset - self.default) / self.scale, -1.0, 1.0)

    def _solve(self, goal):
        pose = self.default.copy()
        index = list(self.chain.joint_index)
        q, _ = solve_position(self.chain, goal[None], self.default[index][None])
        pose[index] = q[0]
        return pose


def make_controller(scenario, task=None, checkpoint=None):
    """
    Return the reference controller of a scenario (oracle when ``task`` is given).

    Which fits which robot: position mode, :class:`PoseController` (IK to the goal for 3-D
    reaching, else the default pose); torque mode, the planar reacher's Jacobian-transpose PD
    (:class:`ReacherController`) or an open-loop sine gait (:class:`GaitController`). With a
    loaded ``checkpoint`` the controller is that policy (:class:`PolicyController`).
    """
    if checkpoint is not None:
        return PolicyController(checkpoint, scenario, task)
    return CONTROLLERS[controller_kind(scenario)](scenario, task)


def controller_kind(scenario):
    """Return the name of the reference controller that fits ``scenario``."""
    if scenario.control_mode == 'velocity':
        raise ValueError(f'no reference controller for velocity mode ({scenario.name!r}): '
                         'pass a checkpoint, or use control.mode position or torque')
    if scenario.control_mode == 'position':
        return 'pose (IK to the goal)' if scenario.goal_region is not None else 'pose (stand)'
    if scenario.kinematics is not None and scenario.goal_radius is not None:
        return 'Jacobian-transpose PD reacher'
    if scenario.goal_region is not None:
        raise ValueError(f'no torque-mode reference controller for 3-D reaching '
                         f'({scenario.name!r}): use control.mode: position, or pass a checkpoint')
    return 'open-loop sine gait'


CONTROLLERS = {'pose (IK to the goal)': PoseController, 'pose (stand)': PoseController,
               'Jacobian-transpose PD reacher': ReacherController,
               'open-loop sine gait': GaitController}


def rollout(env, controller, task, seed):
    """Run one episode of ``controller`` on ``env`` under ``task``; return the return."""
    obs, _ = env.reset(seed=seed, options={'task': task if task is not None else Task()})
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(controller(obs))
        total += reward
        done = terminated or truncated
    return total
