"""
Static gravity torques of a fixed-base robot from its URDF: torque mode's ``hold: gravity``.

A link of mass m whose centre of mass c moves with the joints as c(q) weighs m g; the joint
torques that hold it at rest are ``-m J(q)^T g``, with ``J = dc/dq`` the position Jacobian of its
centre of mass. Summed over the links, joint i carries everything downstream of it, branches
included (a tree): with M_i that mass and c_i its centre of mass, ``-a_i . ((c_i - p_i) x M_i g)``
for a revolute joint of axis a_i through p_i (the weight's torque about the axis), ``-a_i . M_i g``
for a prismatic one. So one pass of ``maml_robot.kinematics.Tree`` (the package's one forward
kinematics; no simulator here, so the ROS adapter node can use it) places every joint and every
body's first moment m c; a constant matrix sums those over each joint's subtree; then one dot
product per joint. Measured per ``torques(q)`` (timeit, 200 calls, a shared 2-core machine): KUKA
iiwa 0.31-0.33 ms, A1 with its 12 joints 0.20-0.22 ms, where one root-to-COM ``Chain`` per link
(the per-link reference that ``tests/test_gravity_hold.py`` checks against) took 3.3-3.5 ms and
6.9-7.5 ms.

The masses are the URDF's nominal ones: a payload, or a randomized mass, is unknown to this model.
The gravity vector is given in the root link's frame; a fixed-base scenario bolts the root to the
world without rotating it, so there it is ``(0, 0, sim.gravity)``.
"""

from dataclasses import dataclass

from maml_robot.kinematics import skew, Tree
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
    :param tree: the ``kinematics.Tree`` from the root link to every moving link with mass,
        over ``joint_names`` followed by ``other_joints``.
    :param mass: (K,) the mass (kg) each tree joint's motion carries rigidly (its body: the
        links between it and the next moving joints).
    :param moment: (K, 3) that body's first moment of mass (kg·m) in the joint's frame.
    :param links: the moving links with mass (sorted): their weights are what is held.
    :param other_joints: the URDF's uncontrolled moving joints, sorted by name.
    :param other_position: where each of those is taken to be (:func:`rest_position`).
    """

    joint_names: tuple
    gravity: tuple
    tree: Tree
    mass: np.ndarray
    moment: np.ndarray
    links: tuple
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
        # the root's weight rests on the mount, a massless link has none
        heavy = [name for name, link in sorted(model.links.items())
                 if name != model.root and link.mass > 0.0]
        tree = Tree.from_urdf(model, model.root, heavy, tuple(joint_names) + others)
        mass, moment = np.zeros(len(tree.joint_names)), np.zeros((len(tree.joint_names), 3))
        links = []
        for name in heavy:
            body, frame = tree.attached[name]
            if body < 0:
                continue        # a link fixed to the root moves with no joint
            link = model.links[name]
            mass[body] += link.mass
            moment[body] += link.mass * (frame[:3, :3] @ link.com + frame[:3, 3])
            links.append(name)
        return cls(tuple(joint_names), tuple(float(g) for g in gravity), tree, mass, moment,
                   tuple(links), others, tuple(rest_position(model.joints[n]) for n in others))

    def __post_init__(self):
        """Precompute the mass each joint carries (its body and all below) and g's cross matrix."""
        carried = self.tree.descendants @ self.mass                     # (K,)
        prismatic = np.array([t == 'prismatic' for t in self.tree.types], dtype=bool)
        weight = np.concatenate([self.moment, self.mass[:, None]], axis=1)[..., None]
        object.__setattr__(self, '_carried', carried)
        object.__setattr__(self, '_prismatic', prismatic)
        object.__setattr__(self, '_weight', weight)                     # (K, 4, 1): (m c, m)
        object.__setattr__(self, '_cross_g', skew(self.gravity))        # v @ it = v x g

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
        frames, axis = self.tree.batch_frames(full)              # (N, K, 4, 4), (N, K, 3)
        origin = frames[..., :3, 3]                                    # (N, K, 3)
        first = (frames @ self._weight)[..., :3, 0]     # each body's m c, root frame: (N, K, 3)
        carried = self.tree.descendants @ first         # summed over each subtree: (N, K, 3)
        lever = carried - self._carried[:, None] * origin        # M (c - p)
        turn = np.sum(axis * (lever @ self._cross_g), axis=-1)   # a . (M (c - p) x g): (N, K)
        push = self._carried * (axis @ np.asarray(self.gravity))      # a . (M g)
        torque = np.zeros_like(full)
        torque[:, list(self.tree.joint_index)] = -np.where(self._prismatic, push, turn)
        return torque[:, :j]

    def torques(self, q) -> np.ndarray:
        """Return the holding effort of each joint (J,) at positions ``q`` (J,), scenario order."""
        q = np.asarray(q, dtype=float)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f'gravity torques need {len(self.joint_names)} joint positions '
                             f'({list(self.joint_names)}), got shape {q.shape}')
        return self.batch_torques(q[None])[0]
