"""
A PyBullet world for one scenario: a client, its robot and a Task's model, joined.

The layers (each tested on its own): ``sim.client.PhysicsClient`` owns the PyBullet connection;
``sim.robot.Robot`` is the URDF body, its joints and its drives; ``sim.task_model`` is what a Task
does (body parameters, motors, latency, sensors) and draws goals. ``World`` joins them into the
episode loop the env and the sim node run: reset, apply an action, step, read state.
"""

import math
import operator

from maml_robot.dynamics import Task
from maml_robot.observation import RobotState
from maml_robot.observation_terms import BASE_TERMS
from maml_robot.scenario import load_scenario
from maml_robot.sim.client import PhysicsClient
from maml_robot.sim.robot import Robot
from maml_robot.sim.task_model import (body_parameters, CommandDelay, draw_goal, motor_gains,
                                       Sensors)
import numpy as np


class World:
    """
    One robot of a scenario in its own PyBullet client (several worlds never interfere).

    :param scenario: a Scenario, a shipped scenario name or a path to a scenario YAML.
    :param task: the dynamics (Task) to apply; None for nominal.
    :param gui: open the PyBullet GUI instead of a headless (DIRECT) client.
    """

    def __init__(self, scenario, task=None, gui=False):
        self.scenario = sc = load_scenario(scenario)
        self.client = client = PhysicsClient(gui, sc.sim_timestep, sc.gravity)
        self._plane = client.add_ground() if sc.ground else None
        self.robot = robot = Robot(client, sc)
        self._physics_step = client.bind('stepSimulation')
        self._pd = robot.drive_loop
        # a zero action's target (the default pose, zero velocity): what acts before a command
        self._rest_target = self._pd.target([0.0] * len(robot.joints)) if self._pd else None
        self._target = self._rest_target
        self._needs_base = bool(set(sc.observation) & set(BASE_TERMS)) or bool(
            sc.termination) or 'forward_velocity' in sc.reward
        self._goal = self._goal_list = None
        self._rng = np.random.default_rng(0)
        self._torque = [0.0] * len(robot.joints)
        self._action_shape = (len(robot.joints),)
        self._initial_q = sc.initial_joint_position.tolist()
        self._limits = sc.position_limits.tolist()     # [(lower, upper)] per joint
        self._restore = client.bind('restoreState', client.saveState())
        self.set_task(task)
        self._read()

    # -- task -----------------------------------------------------------------------------
    def set_task(self, task):
        """Apply the dynamics of ``task`` (None: nominal); takes effect immediately."""
        sc, robot = self.scenario, self.robot
        task = (Task.nominal(sc) if task is None else task).check(sc)
        self.task = task
        robot.set_physics(*body_parameters(task, robot.nominal, robot.payload_index))
        if self._plane is not None:
            self.client.changeDynamics(self._plane, -1,
                                       lateralFriction=sc.ground_friction * task.friction_scale)
        j = len(robot.joints)
        motor = motor_gains(sc, task)   # on top of the commanded effort
        self._motor_list = motor.tolist()
        # torque mode: effort = action * gain, gain = action scale x motor
        self._gain_list = (robot.effort_scale * motor).tolist()
        self._sensors = Sensors(task.joint_array('calibration_offset', j), task.obs_noise_std)
        self._delay = CommandDelay(task.latency_steps, j)

    def get_task(self):
        """Return the Task in effect."""
        return self.task

    # -- episode --------------------------------------------------------------------------
    def reset(self, rng):
        """Start an episode: initial pose with noise and (reaching scenarios) a goal from rng."""
        sc = self.scenario
        self._rng = rng
        self._restore()
        j = len(self._initial_q)
        # plain floats (the same operations numpy would do, element by element): a reset is
        # a few percent of a short episode's time
        noise_q, noise_qd = sc.joint_position_noise, sc.joint_velocity_noise
        q = [min(max(q0 + u * noise_q, lo), hi) for q0, u, (lo, hi) in
             zip(self._initial_q, rng.uniform(-1, 1, j).tolist(), self._limits)]
        qd = [u * noise_qd for u in rng.uniform(-1, 1, j).tolist()]
        self.robot.set_joints(q, qd)
        goal = draw_goal(sc, rng)
        if goal is not None:
            self._goal, self._goal_list = np.array(goal), goal   # finite by construction
        self._delay.clear()
        self._torque = [0.0] * j
        self._target = self._rest_target
        self._read()

    def set_goal(self, xyz):
        """Set the goal position (3,): world frame (planar), kinematics.base_link frame (urdf)."""
        goal = np.asarray(xyz, dtype=float)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f'goal must be 3 finite numbers (x, y, z), got {xyz!r}')
        self._goal = goal
        self._goal_list = goal.tolist()

    def apply_action(self, action):
        """
        Command normalized ``action`` (J,) (clipped to [-1, 1]); it acts after the latency.

        Returns the clipped action as a list of floats (what the reward's control cost sees).
        """
        # plain-float arithmetic: for a handful of joints it is several times cheaper than
        # numpy ufuncs, and this runs once per control step
        if type(action) is np.ndarray and action.dtype.kind == 'f':
            a = action    # float32/float64 -> Python floats is exact: no converted copy needed
        else:
            a = np.asarray(action, dtype=float)
        values = a.tolist()
        if a.shape != self._action_shape or not all(map(math.isfinite, values)):
            raise ValueError(f'action must be {self._action_shape[0]} finite numbers, '
                             f'got {action!r}')
        clipped = [-1.0 if v < -1.0 else (1.0 if v > 1.0 else v) for v in values]
        delayed = self._delay.push(clipped)
        if self._pd is None:
            self._torque = list(map(operator.mul, delayed, self._gain_list))
        else:
            self._target = self._pd.target(delayed)
        return clipped

    def step(self):
        """Advance the physics by one control period (frame_skip steps) under the commands."""
        if self._pd is not None:
            self._step_drive()
            return
        command, physics_step, torque = self.robot.command_torques, self._physics_step, \
            self._torque
        for _ in range(self.scenario.frame_skip):
            # Bullet clears joint torques after every physics step: re-apply them each time.
            command(forces=torque)
            physics_step()
        self._read()

    def _step_drive(self):
        """
        Position and velocity modes: the drive's loop runs at the physics rate, as drivers do.

        Its effort then meets the motor (strength, direction, dead joint), as the commanded
        effort does in torque mode.
        """
        read, command = self.robot.joint_states, self.robot.command_torques
        pd, target, motor = self._pd, self._target, self._motor_list
        physics_step = self._physics_step
        # the driver sees the encoder: calibration offsets included
        offset = self._sensors.position_offsets
        for _ in range(self.scenario.frame_skip):
            states = read()
            effort = pd.effort(target, [s[0] + o for s, o in zip(states, offset)],
                               [s[1] for s in states])
            self._torque = list(map(operator.mul, effort, motor))
            command(forces=self._torque)
            physics_step()
        self._read()

    # -- state ----------------------------------------------------------------------------
    def _read(self):
        # plain lists only: the env's per-step path never needs arrays (true_state() makes them)
        self._q_list, self._qd_list = self.robot.read_joints()
        self._base = self.robot.read_base() if self._needs_base else (None, None, None, None)

    def true_state(self, lists=False):
        """
        Return the state as it is (used for rewards).

        ``lists=True``: joint positions, velocities and the goal as lists of floats (the env's
        per-step path; same numbers, no array round trip).
        """
        pos, orn, lin, ang = self._base
        if lists:
            return RobotState(self._q_list, self._qd_list, self._goal_list, pos, orn, lin, ang)
        return RobotState(np.array(self._q_list), np.array(self._qd_list), self._goal, pos, orn,
                          lin, ang)

    def measured_state(self, lists=False):
        """
        Return the state as the sensors report it: calibration offset and noise added.

        ``lists=True``: joint positions, velocities and the goal as lists of floats
        (bit-identical numbers: the same float additions and the same noise draw).
        """
        q, qd = self._sensors.measure(self._q_list, self._qd_list, self._rng)
        pos, orn, lin, ang = self._base
        if lists:
            return RobotState(q, qd, self._goal_list, pos, orn, lin, ang)
        return RobotState(np.array(q), np.array(qd), self._goal, pos, orn, lin, ang)

    @property
    def applied_effort(self):
        """Return the efforts (J,) the motors applied in the last physics step (0 at reset)."""
        return np.array(self._torque)

    def link_position(self, name):
        """Return the world position (3,) of a URDF link's frame (for tests and tools)."""
        return self.robot.link_position(name)

    def render_rgb(self, width=320, height=240):
        """Return an RGB image (height, width, 3) uint8 from a camera looking at the base."""
        target = self._base[0] if self._base[0] is not None else np.zeros(3)
        size = (0.6 if self.scenario.goal_radius is not None
                else 2.0 if self.scenario.goal_region is not None else 3.0)
        return self.client.camera_image(target.tolist(), size, width, height)

    @property
    def client_id(self):
        """Return the PyBullet physics client id this world owns."""
        return self.client.client_id

    @property
    def body_id(self):
        """Return the PyBullet body id of the robot."""
        return self.robot.body

    def close(self):
        """Disconnect the PyBullet client (idempotent)."""
        if hasattr(self, 'client'):
            self.client.close()
