"""
Static gravity torques of a fixed-base robot from its URDF: torque mode's ``hold: gravity``.

A link of mass m whose centre of mass c moves with the joints as c(q) weighs m g; the joint
torques that hold it at rest are ``-m J(q)^T g``, with ``J = dc/dq`` the position Jacobian of its
centre of mass (for a revolute joint ``axis x (c - p)``, p the joint's origin: the torque of the
link's weight about the joint's axis; for a prismatic joint the axis itself). Summed over every
moving link, that is the torque each joint needs to carry everything downstream of it, branches
included (a tree). Each link's Jacobian comes from ``maml_robot.kinematics.Chain`` (the package's
one forward kinematics), built from the root link to the link's ``<inertial>`` origin; there is no
simulator here, so the ROS adapter node can use it.

The masses are the URDF's nominal ones: a payload, or a randomized mass, is unknown to this model.
The gravity vector is given in the root link's frame; a fixed-base scenario bolts the root to the
world without rotating it, so there it is ``(0, 0, sim.gravity)``.
"""

from dataclasses import dataclass

from maml_robot.kinematics import Chain
import numpy as np


def rest_position(joint):
    """
    Return where an uncontrolled moving joint is taken to be: 0, within its limits.

    That is the pose the URDF loads in, where ``uncontrolled: lock`` holds the joint.
    """
    lower, upper = joint.lower, joint.upper
    if joint.type == 'continuous' or lower is None or upper is None or lower > upper:
        return 0.0
    return min(max(0.0, lower), upper)


@dataclass(frozen=True, eq=False)
class GravityModel:
    """
    The joint torques that hold a fixed-base robot still against gravity.

    :param joint_names: the controlled joints (scenario order): ``torques`` returns theirs.
    :param gravity: (3,) gravitational acceleration in the root link's frame (m/s^2).
    :param chains: one Chain per moving link with mass: root link -> its centre of mass, over
        ``joint_names`` followed by ``other_joints`` (the indices of the full joint vector).
    :param masses: the mass (kg) of each chain's link.
    :param other_joints: the URDF's uncontrolled moving joints, sorted by name.
    :param other_position: where each of those is taken to be (:func:`rest_position`).
    """

    joint_names: tuple
    gravity: tuple
    chains: tuple
    masses: tuple
    other_joints: tuple
    other_position: tuple

    @classmethod
    def from_urdf(cls, model, joint_names, gravity=(0.0, 0.0, -9.81)):
        """
        Build the model of a parsed URDF (``maml_robot.urdf.UrdfModel``) rooted at its root link.

        Raises ``maml_robot.kinematics.KinematicsError`` when a floating or planar joint sits
        between the root and a link with mass (no fixed-base gravity torque exists for it).
        """
        others = tuple(sorted(n for n in model.moving_joints if n not in joint_names))
        order = tuple(joint_names) + others
        chains, masses = [], []
        for name, link in sorted(model.links.items()):
            if name == model.root or link.mass <= 0.0:
                continue    # the root's weight rests on the mount, a massless link has none
            chain = Chain.from_urdf(model, model.root, name, order, tip_offset=link.com)
            if chain.size:   # a link fixed to the root moves with no joint
                chains.append(chain)
                masses.append(float(link.mass))
        return cls(tuple(joint_names), tuple(float(g) for g in gravity), tuple(chains),
                   tuple(masses), others,
                   tuple(rest_position(model.joints[n]) for n in others))

    def batch_torques(self, qs) -> np.ndarray:
        """
        Return the holding torques (N, J) (N·m, N for prismatic joints) at positions qs (N, J).

        Positive torque turns (pushes) a joint the way its axis points: the effort to command.
        """
        qs = np.asarray(qs, dtype=float)                               # (N, J)
        n, j = qs.shape
        rest = np.broadcast_to(np.asarray(self.other_position, dtype=float),
                               (n, len(self.other_position)))
        full = np.concatenate([qs, rest], axis=1)                      # (N, J + others)
        torque = np.zeros_like(full)
        g = np.asarray(self.gravity)
        for chain, mass in zip(self.chains, self.masses):
            index = list(chain.joint_index)       # distinct: one column per chain joint
            _, rows = chain.batch_jacobian(full[:, index])             # (N, size, 3)
            torque[:, index] -= mass * (rows @ g)                      # (N, size)
        return torque[:, :j]

    def torques(self, q) -> np.ndarray:
        """Return the holding effort of each joint (J,) at positions ``q`` (J,), scenario order."""
        q = np.asarray(q, dtype=float)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f'gravity torques need {len(self.joint_names)} joint positions '
                             f'({list(self.joint_names)}), got shape {q.shape}')
        return self.batch_torques(q[None])[0]
