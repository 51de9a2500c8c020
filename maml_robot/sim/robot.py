"""
The robot layer: one URDF body in a PhysicsClient, its joints in scenario order, its drives.

``Robot`` loads the scenario's URDF, indexes its joints and links, frees the controlled joints
(torque control) and locks or frees the others, and reads and writes joint and base state.
``PositionLoop`` and ``VelocityLoop`` are the position and velocity modes' drive laws
(``maml_robot.actuation``) in plain floats, as a motor driver runs them at the physics rate.
Nothing here knows about Tasks, goals or rewards.
"""

import numpy as np
import pybullet

ROBOT_FRICTION = 1.0  # lateral friction of every robot link; Bullet multiplies it by the ground's
MAX_JOINT_VELOCITY = 1e4  # rad/s (m/s): effectively no clamp, see Robot._configure_joints
LOCK_FORCE = 1e3  # N·m (N) holding a locked joint whose URDF gives no effort limit


class PositionLoop:
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


class VelocityLoop:
    """A joint velocity loop in plain floats (it runs every physics step): the Actuation's law."""

    def __init__(self, actuation):
        self.scale = actuation.action_scale.tolist()
        self.limits = actuation.velocity_limit.tolist()
        self.gains = list(zip(actuation.kv.tolist(), actuation.effort_limit.tolist()))

    def target(self, action):
        """Return the velocity target of a clipped normalized action (Actuation.command)."""
        return [min(max(a * s, -v), v) for a, s, v in zip(action, self.scale, self.limits)]

    def effort(self, target, q, qd):
        """Return kv (target - qd) per joint, clamped to the effort limit (``q`` is unused)."""
        out = []
        for t, v, (kv, limit) in zip(target, qd, self.gains):
            e = kv * (t - v)
            out.append(-limit if e < -limit else (limit if e > limit else e))
        return out


DRIVE_LOOPS = {'position': PositionLoop, 'velocity': VelocityLoop}
"""The drive loop of each mode that has one (torque mode commands the effort itself)."""


class Robot:
    """
    The scenario's robot in ``client``: joints in scenario order (``joints``: Bullet indices).

    :param client: the PhysicsClient to load into (it must outlive the robot).
    :param scenario: the Scenario (URDF, joints, base, uncontrolled joints).
    """

    def __init__(self, client, scenario):
        self.client, self.scenario = client, scenario
        self.body = body = client.load_urdf(scenario.urdf_path, scenario.base_position,
                                            scenario.base_fixed)
        self.link_index, by_name, self.moving = {}, {}, []
        for i in range(client.getNumJoints(body)):
            info = client.getJointInfo(body, i)
            by_name[info[1].decode()] = i
            self.link_index[info[12].decode()] = i
            if info[2] != pybullet.JOINT_FIXED:
                self.moving.append(i)
        self.link_index[client.getBodyInfo(body)[0].decode()] = -1
        self.joints = [by_name[n] for n in scenario.joint_names]
        self.base_index = self.link_index[scenario.base_link]
        self.payload_index = (self.link_index[scenario.payload_link] if scenario.payload_link
                              else None)
        self._configure_joints()
        self.nominal = self._read_nominal_dynamics()
        actuation = scenario.actuation
        # the drives: torque mode, effort = action * effort_scale (<= the effort limit, checked
        # at load); position and velocity modes, the drive loop of the action's target
        self.effort_scale = actuation.action_scale.astype(float)
        loop = DRIVE_LOOPS.get(actuation.mode)
        self.drive_loop = loop(actuation) if loop is not None else None
        # bound once: these run every physics or control step (see PhysicsClient.bind)
        self.joint_states = client.bind('getJointStates', body, self.joints)
        self.command_torques = client.bind('setJointMotorControlArray', body, self.joints,
                                           pybullet.TORQUE_CONTROL)   # call with forces=[...]
        self._reset_joint = client.bind('resetJointState', body)
        self._base_pose = client.bind('getBasePositionAndOrientation', body)
        self._base_velocity = client.bind('getBaseVelocity', body)
        self._link_state = client.bind('getLinkState', body)

    def _configure_joints(self):
        """Free every joint (torque control), lock or free the others, set friction."""
        client, body, moving = self.client, self.body, self.moving
        # Free every joint: PyBullet's default velocity motors would otherwise hold them.
        client.setJointMotorControlArray(body, moving, pybullet.VELOCITY_CONTROL,
                                         forces=[0.0] * len(moving))
        self._lock_uncontrolled([i for i in moving if i not in self.joints])
        for link in range(-1, client.getNumJoints(body)):
            client.changeDynamics(body, link, lateralFriction=ROBOT_FRICTION, linearDamping=0.0,
                                  angularDamping=0.0)
        # No velocity clamp: Bullet's maxJointVelocity (default 100 rad/s) clips velocities
        # without conserving momentum, which lets a flailing robot propel itself for free.
        for index in moving:
            client.changeDynamics(body, index, maxJointVelocity=MAX_JOINT_VELOCITY)

    def _lock_uncontrolled(self, others):
        """``uncontrolled: lock``: hold the URDF's other moving joints at their position."""
        if self.scenario.uncontrolled != 'lock' or not others:
            return
        client, body = self.client, self.body
        infos = [client.getJointInfo(body, i) for i in others]
        # where they are at load, within their limits (Bullet reports lower > upper for none)
        targets = [s[0] if info[8] > info[9] else min(max(s[0], info[8]), info[9])
                   for s, info in zip(client.getJointStates(body, others), infos)]
        forces = [info[10] or LOCK_FORCE for info in infos]
        client.setJointMotorControlArray(body, others, pybullet.POSITION_CONTROL,
                                         targetPositions=targets, forces=forces)

    def _read_nominal_dynamics(self):
        """Return {'masses': {link: (mass, inertia diagonal)}, 'damping': [per joint]}."""
        client, body = self.client, self.body
        links = range(0 if self.scenario.base_fixed else -1, client.getNumJoints(body))
        masses = {}
        for link in links:
            info = client.getDynamicsInfo(body, link)
            masses[link] = (info[0], tuple(info[2]))
        damping = [client.getJointInfo(body, j)[6] for j in self.joints]
        return {'masses': masses, 'damping': damping}

    def set_physics(self, masses, damping):
        """Set each link's (mass, inertia diagonal) and each controlled joint's damping."""
        client, body = self.client, self.body
        for link, (mass, inertia) in masses.items():
            client.changeDynamics(body, link, mass=mass, localInertiaDiagonal=inertia)
        for j, d in zip(self.joints, damping):
            client.changeDynamics(body, j, jointDamping=d)

    def set_joints(self, q, qd):
        """Put the controlled joints at positions ``q`` and velocities ``qd`` (lists)."""
        reset = self._reset_joint
        for index, pos, vel in zip(self.joints, q, qd):
            reset(index, pos, vel)

    def read_joints(self):
        """Return (positions, velocities) of the controlled joints, lists of floats."""
        states = self.joint_states()
        return [s[0] for s in states], [s[1] for s in states]

    def read_base(self):
        """Return the base link's position (3,), quaternion (4,), linear and angular velocity."""
        if self.base_index == -1:
            pos, orn = self._base_pose()
            lin, ang = self._base_velocity()
            return np.array(pos), np.array(orn), np.array(lin), np.array(ang)
        ls = self._link_state(self.base_index, computeLinkVelocity=1, computeForwardKinematics=1)
        return np.array(ls[4]), np.array(ls[5]), np.array(ls[6]), np.array(ls[7])

    def link_position(self, name):
        """Return the world position (3,) of a URDF link's frame."""
        index = self.link_index[name]
        if index == -1:
            return np.array(self._base_pose()[0])
        return np.array(self._link_state(index, computeForwardKinematics=1)[4])
