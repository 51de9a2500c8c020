"""A PyBullet world for one scenario: owns its client, applies a Task, steps and reads state."""

import contextlib
import math
import operator
import os
import sys

from maml_robot.dynamics import Task
from maml_robot.observation import RobotState
from maml_robot.scenario import load_scenario
import numpy as np
import pybullet

_BASE_TERMS = ('base_height', 'base_pitch', 'base_orientation', 'base_planar_velocity',
               'base_linear_velocity', 'base_angular_velocity')
ROBOT_FRICTION = 1.0  # lateral friction of every robot link; Bullet multiplies it by the ground's
MAX_JOINT_VELOCITY = 1e4  # rad/s (m/s): effectively no clamp, see _index_joints
LOCK_FORCE = 1e3  # N·m (N) holding a locked joint whose URDF gives no effort limit


@contextlib.contextmanager
def _quiet_stdout():
    """Silence the C-level stdout (the URDF importer prints warnings for inertia-less roots)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no usable stdout (closed or detached): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class _PositionLoop:
    """A joint PD loop in plain floats (it runs every physics step): the Actuation's law."""

    def __init__(self, actuation):
        self.default = actuation.default_position.tolist()
        self.scale = actuation.action_scale.tolist()
        self.limits = actuation.position_limits.tolist()
        self.gains = list(zip(actuation.kp.tolist(), actuation.kd.tolist(),
                              actuation.effort_limit.tolist()))

    def target(self, action):
        """Return the position target of a clipped normalized action (Actuation.command)."""
        return [min(max(d + a * s, lo), hi) for d, a, s, (lo, hi) in
                zip(self.default, action, self.scale, self.limits)]

    def effort(self, target, q, qd):
        """Return kp (target - q) - kd qd per joint, clamped to the effort limit."""
        out = []
        for t, p, v, (kp, kd, limit) in zip(target, q, qd, self.gains):
            e = kp * (t - p) - kd * v
            out.append(-limit if e < -limit else (limit if e > limit else e))
        return out


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


class World:
    """
    One robot of a scenario in its own PyBullet client (several worlds never interfere).

    :param scenario: a Scenario, a shipped scenario name or a path to a scenario YAML.
    :param task: the dynamics (Task) to apply; None for nominal.
    :param gui: open the PyBullet GUI instead of a headless (DIRECT) client.
    """

    def __init__(self, scenario, task=None, gui=False):
        self.scenario = sc = load_scenario(scenario)
        self._cid = pybullet.connect(pybullet.GUI if gui else pybullet.DIRECT)
        if self._cid < 0:
            raise RuntimeError('cannot connect to PyBullet (is another GUI client open?)')
        cid = self._cid
        pybullet.setTimeStep(sc.sim_timestep, physicsClientId=cid)
        pybullet.setGravity(0, 0, sc.gravity, physicsClientId=cid)
        self._plane = None
        if sc.ground:
            shape = pybullet.createCollisionShape(pybullet.GEOM_PLANE, physicsClientId=cid)
            self._plane = pybullet.createMultiBody(0, shape, physicsClientId=cid)
        with _quiet_stdout():
            self._body = pybullet.loadURDF(
                str(sc.urdf_path), basePosition=sc.base_position, useFixedBase=sc.base_fixed,
                flags=pybullet.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        self._index_joints()
        self._pd = _PositionLoop(sc.actuation) if sc.actuation.is_position else None
        self._target = sc.actuation.default_position.tolist()
        self._nominal = self._read_nominal_dynamics()
        self._needs_base = bool(set(sc.observation) & set(_BASE_TERMS)) or bool(
            sc.termination) or 'forward_velocity' in sc.reward
        self._goal = self._goal_list = None
        self._rng = np.random.default_rng(0)
        self._torque = [0.0] * len(self._joints)
        self._action_shape = (len(self._joints),)
        self._initial_q = sc.initial_joint_position.tolist()
        self._limits = sc.position_limits.tolist()     # [(lower, upper)] per joint
        self._origin = (None if sc.goal_radius is None   # the planar reacher's shoulder axis
                        else tuple(float(v) for v in sc.kinematics['origin']))
        self._saved = pybullet.saveState(physicsClientId=cid)
        self.set_task(task)
        self._read()

    # -- construction helpers -------------------------------------------------------------
    def _index_joints(self):
        sc, cid, body = self.scenario, self._cid, self._body
        by_name, self._link_index = {}, {}
        moving = []
        for i in range(pybullet.getNumJoints(body, physicsClientId=cid)):
            info = pybullet.getJointInfo(body, i, physicsClientId=cid)
            by_name[info[1].decode()] = i
            self._link_index[info[12].decode()] = i
            if info[2] != pybullet.JOINT_FIXED:
                moving.append(i)
        self._link_index[pybullet.getBodyInfo(body, physicsClientId=cid)[0].decode()] = -1
        self._joints = [by_name[n] for n in sc.joint_names]
        # Free every joint: PyBullet's default velocity motors would otherwise hold them.
        pybullet.setJointMotorControlArray(body, moving, pybullet.VELOCITY_CONTROL,
                                           forces=[0.0] * len(moving), physicsClientId=cid)
        self._lock_uncontrolled([i for i in moving if i not in self._joints])
        for link in range(-1, pybullet.getNumJoints(body, physicsClientId=cid)):
            pybullet.changeDynamics(body, link, lateralFriction=ROBOT_FRICTION,
                                    linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        # No velocity clamp: Bullet's maxJointVelocity (default 100 rad/s) clips velocities
        # without conserving momentum, which lets a flailing robot propel itself for free.
        for index in moving:
            pybullet.changeDynamics(body, index, maxJointVelocity=MAX_JOINT_VELOCITY,
                                    physicsClientId=cid)
        self._base_index = self._link_index[sc.base_link]
        self._payload_index = (self._link_index[sc.payload_link] if sc.payload_link else None)
        # torque mode: effort = action * action_scale (<= the effort limit, checked at load)
        self._effort = sc.action_scale.astype(float)

    def _lock_uncontrolled(self, others):
        """``uncontrolled: lock``: hold the URDF's other moving joints at their position."""
        if self.scenario.uncontrolled != 'lock' or not others:
            return
        cid, body = self._cid, self._body
        infos = [pybullet.getJointInfo(body, i, physicsClientId=cid) for i in others]
        # where they are at load, within their limits (Bullet reports lower > upper for none)
        targets = [s[0] if info[8] > info[9] else min(max(s[0], info[8]), info[9])
                   for s, info in zip(pybullet.getJointStates(body, others, physicsClientId=cid),
                                      infos)]
        forces = [info[10] or LOCK_FORCE for info in infos]
        pybullet.setJointMotorControlArray(body, others, pybullet.POSITION_CONTROL,
                                           targetPositions=targets, forces=forces,
                                           physicsClientId=cid)

    def _read_nominal_dynamics(self):
        cid, body = self._cid, self._body
        links = range(0 if self.scenario.base_fixed else -1,
                      pybullet.getNumJoints(body, physicsClientId=cid))
        masses = {}
        for link in links:
            info = pybullet.getDynamicsInfo(body, link, physicsClientId=cid)
            masses[link] = (info[0], tuple(info[2]))
        damping = [pybullet.getJointInfo(body, j, physicsClientId=cid)[6] for j in self._joints]
        return {'masses': masses, 'damping': damping}

    # -- task -----------------------------------------------------------------------------
    def set_task(self, task):
        """Apply the dynamics of ``task`` (None: nominal); takes effect immediately."""
        sc, cid, body = self.scenario, self._cid, self._body
        task = (Task.nominal(sc) if task is None else task).check(sc)
        self.task = task
        for link, (mass, inertia) in self._nominal['masses'].items():
            extra = task.payload if link == self._payload_index else 0.0
            scaled = [v * task.mass_scale for v in inertia]
            pybullet.changeDynamics(body, link, mass=mass * task.mass_scale + extra,
                                    localInertiaDiagonal=scaled, physicsClientId=cid)
        for j, d in zip(self._joints, self._nominal['damping']):
            pybullet.changeDynamics(body, j, jointDamping=d * task.damping_scale,
                                    physicsClientId=cid)
        if self._plane is not None:
            pybullet.changeDynamics(self._plane, -1,
                                    lateralFriction=sc.ground_friction * task.friction_scale,
                                    physicsClientId=cid)
        j = len(self._joints)
        alive = np.array([0.0 if n in task.dead_joints else 1.0 for n in sc.joint_names])
        # the motor: strength x direction (0 for a dead joint) on top of the commanded effort
        motor = task.joint_array('motor_strength', j) * task.joint_array('motor_direction', j) \
            * alive
        self._motor_list = motor.tolist()
        # torque mode: effort = action * gain, gain = action scale x motor
        self._gain_list = (self._effort * motor).tolist()
        # measured = true + offset: calibration offsets on positions, none on velocities
        self._sensor_offset = np.concatenate([task.joint_array('calibration_offset', j),
                                              np.zeros(j)])  # (2J,)
        self._offset_list = self._sensor_offset.tolist()
        self._noise = np.empty(2 * j)   # filled in place by each draw (no allocation per step)
        self._latency = [[0.0] * j for _ in range(task.latency_steps + 1)]  # FIFO of commands
        self._latency_pos = 0

    def get_task(self):
        """Return the Task in effect."""
        return self.task

    # -- episode --------------------------------------------------------------------------
    def reset(self, rng):
        """Start an episode: initial pose with noise and (reaching scenarios) a goal from rng."""
        sc, cid, body = self.scenario, self._cid, self._body
        self._rng = rng
        pybullet.restoreState(self._saved, physicsClientId=cid)
        j = len(self._joints)
        # plain floats (the same operations numpy would do, element by element): a reset is
        # a few percent of a short episode's time
        noise_q, noise_qd = sc.joint_position_noise, sc.joint_velocity_noise
        q = [min(max(q0 + u * noise_q, lo), hi) for q0, u, (lo, hi) in
             zip(self._initial_q, rng.uniform(-1, 1, j).tolist(), self._limits)]
        qd = [u * noise_qd for u in rng.uniform(-1, 1, j).tolist()]
        for index, pos, vel in zip(self._joints, q, qd):
            pybullet.resetJointState(body, index, pos, vel, physicsClientId=cid)
        if sc.goal_radius is not None:
            radius = rng.uniform(*sc.goal_radius)
            angle = rng.uniform(-math.pi, math.pi)
            x0, y0, z0 = self._origin
            goal = [x0 + radius * math.cos(angle), y0 + radius * math.sin(angle), z0]
            self._goal, self._goal_list = np.array(goal), goal   # finite by construction
        elif sc.goal_region is not None:
            goal = sample_goal(sc.goal_region, rng)
            self._goal, self._goal_list = np.array(goal), goal
        self._latency = [[0.0] * j for _ in self._latency]
        self._latency_pos = 0
        self._torque = [0.0] * j
        self._target = self.scenario.actuation.default_position.tolist()
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
            raise ValueError(f'action must be {len(self._joints)} finite numbers, got {action!r}')
        clipped = [-1.0 if v < -1.0 else (1.0 if v > 1.0 else v) for v in values]
        buf = self._latency
        if len(buf) == 1:
            delayed = clipped
        else:
            buf[self._latency_pos] = clipped
            self._latency_pos = (self._latency_pos + 1) % len(buf)
            delayed = buf[self._latency_pos]  # the oldest command
        if self._pd is None:
            self._torque = list(map(operator.mul, delayed, self._gain_list))
        else:
            self._target = self._pd.target(delayed)
        return clipped

    def step(self):
        """Advance the physics by one control period (frame_skip steps) under the commands."""
        if self._pd is not None:
            self._step_position()
            return
        cid, body, joints, torque = self._cid, self._body, self._joints, self._torque
        command, physics_step = pybullet.setJointMotorControlArray, pybullet.stepSimulation
        mode = pybullet.TORQUE_CONTROL
        for _ in range(self.scenario.frame_skip):
            # Bullet clears joint torques after every physics step: re-apply them each time.
            command(body, joints, mode, forces=torque, physicsClientId=cid)
            physics_step(physicsClientId=cid)
        self._read()

    def _step_position(self):
        """Position mode: the PD loop runs at the physics rate, as motor drivers do."""
        cid, body, joints = self._cid, self._body, self._joints
        read, command = pybullet.getJointStates, pybullet.setJointMotorControlArray
        physics_step, mode = pybullet.stepSimulation, pybullet.TORQUE_CONTROL
        pd, target, motor = self._pd, self._target, self._motor_list
        offset = self._offset_list   # the driver sees the encoder: calibration offsets included
        for _ in range(self.scenario.frame_skip):
            states = read(body, joints, physicsClientId=cid)
            effort = pd.effort(target, [s[0] + o for s, o in zip(states, offset)],
                               [s[1] for s in states])
            self._torque = list(map(operator.mul, effort, motor))
            command(body, joints, mode, forces=self._torque, physicsClientId=cid)
            physics_step(physicsClientId=cid)
        self._read()

    # -- state ----------------------------------------------------------------------------
    def _read(self):
        cid, body = self._cid, self._body
        states = pybullet.getJointStates(body, self._joints, physicsClientId=cid)
        # plain lists only: the env's per-step path never needs arrays (true_state() makes them)
        self._q_list, self._qd_list = [s[0] for s in states], [s[1] for s in states]
        if not self._needs_base:
            self._base = (None, None, None, None)
        elif self._base_index == -1:
            pos, orn = pybullet.getBasePositionAndOrientation(body, physicsClientId=cid)
            lin, ang = pybullet.getBaseVelocity(body, physicsClientId=cid)
            self._base = (np.array(pos), np.array(orn), np.array(lin), np.array(ang))
        else:
            ls = pybullet.getLinkState(body, self._base_index, computeLinkVelocity=1,
                                       computeForwardKinematics=1, physicsClientId=cid)
            self._base = (np.array(ls[4]), np.array(ls[5]), np.array(ls[6]), np.array(ls[7]))

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
        std = self.task.obs_noise_std
        if std > 0:   # one draw for positions then velocities: the same numbers as two draws
            noise = self._rng.standard_normal(out=self._noise).tolist()
            measured = [(v + o) + std * n for v, o, n in
                        zip(self._q_list + self._qd_list, self._offset_list, noise)]
        else:
            measured = list(map(operator.add, self._q_list + self._qd_list, self._offset_list))
        j = len(self._q_list)
        pos, orn, lin, ang = self._base
        if lists:
            return RobotState(measured[:j], measured[j:], self._goal_list, pos, orn, lin, ang)
        return RobotState(np.array(measured[:j]), np.array(measured[j:]), self._goal, pos, orn,
                          lin, ang)

    @property
    def applied_effort(self):
        """Return the efforts (J,) the motors applied in the last physics step (0 at reset)."""
        return np.array(self._torque)

    def link_position(self, name):
        """Return the world position (3,) of a URDF link's frame (for tests and tools)."""
        index = self._link_index[name]
        if index == -1:
            return np.array(pybullet.getBasePositionAndOrientation(
                self._body, physicsClientId=self._cid)[0])
        return np.array(pybullet.getLinkState(self._body, index, computeForwardKinematics=1,
                                              physicsClientId=self._cid)[4])

    def render_rgb(self, width=320, height=240):
        """Return an RGB image (height, width, 3) uint8 from a camera looking at the base."""
        cid = self._cid
        target = self._base[0] if self._base[0] is not None else np.zeros(3)
        size = (0.6 if self.scenario.goal_radius is not None
                else 2.0 if self.scenario.goal_region is not None else 3.0)
        view = pybullet.computeViewMatrixFromYawPitchRoll(
            target.tolist(), size, 30.0, -40.0, 0.0, 2, physicsClientId=cid)
        proj = pybullet.computeProjectionMatrixFOV(60.0, width / height, 0.01, 100.0,
                                                   physicsClientId=cid)
        img = pybullet.getCameraImage(width, height, view, proj,
                                      renderer=pybullet.ER_TINY_RENDERER, physicsClientId=cid)
        rgba = np.reshape(np.asarray(img[2], dtype=np.uint8), (height, width, 4))
        return rgba[:, :, :3].copy()

    @property
    def client_id(self):
        """Return the PyBullet physics client id this world owns."""
        return self._cid

    @property
    def body_id(self):
        """Return the PyBullet body id of the robot."""
        return self._body

    def close(self):
        """Disconnect the PyBullet client (idempotent)."""
        if getattr(self, '_cid', -1) >= 0:
            if pybullet.isConnected(physicsClientId=self._cid):
                pybullet.disconnect(physicsClientId=self._cid)
            self._cid = -1

    def __del__(self):
        """Release the client if the owner forgot to close()."""
        try:
            self.close()
        except Exception:  # noqa: B902 - interpreter shutdown may have torn pybullet down
            pass
