"""
Exact forward kinematics of a serial chain or a tree read from a URDF (numpy, no simulator).

The ROS adapter node computes the reaching observation from ``joint_states`` alone, so this module
must not import PyBullet. A chain from ``base_link`` to ``tip_link`` is the URDF joints on the path
between them: each contributes its constant origin (xyz, then roll-pitch-yaw as fixed-axis
X-Y-Z rotations) followed by its motion (a rotation about ``axis`` by q for revolute and
continuous joints, a translation along ``axis`` by q for prismatic ones, nothing for fixed ones).
Constant transforms between moving joints are multiplied once at load; the tip position is then
computed from the tip back to the base on 3-vectors with plain floats (a rotation by Rodrigues'
formula and one affine map per moving joint), which for a 7-joint arm costs a few microseconds per
call (numpy's per-call overhead would dominate 4x4 products at this size). A ``Tree`` gives every
moving joint's frame of several branches at once (batched 4x4 products, one per depth): the
gravity model's one pass.

Why not pinocchio or yourdfpy: pinocchio is a heavy binary dependency (and its wheels lag new
Pythons), yourdfpy pulls trimesh and lxml for features we do not use; what scenarios need is about
a hundred lines that a test checks against PyBullet to 1e-5 m.
"""

from dataclasses import dataclass
import math

import numpy as np

MOVING = ('revolute', 'continuous', 'prismatic')


class KinematicsError(ValueError):
    """A chain that cannot be built; ``field`` is the argument to change ('base_link', ...)."""

    def __init__(self, field, message):
        self.field = field
        super().__init__(message)


def rpy_matrix(roll, pitch, yaw):
    """Return the URDF rotation (3, 3) of fixed-axis roll (x), pitch (y), yaw (z): Rz Ry Rx."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def origin_transform(joint):
    """Return the constant 4x4 transform of a URDF joint's <origin> (parent -> joint frame)."""
    t = np.eye(4)
    t[:3, :3] = rpy_matrix(*joint.rpy)
    t[:3, 3] = joint.xyz
    return t


def skew(axis):
    """Return the cross-product matrix K (3, 3) of ``axis``: ``K @ v`` is ``axis x v``."""
    kx, ky, kz = axis
    return np.array([[0.0, -kz, ky], [kz, 0.0, -kx], [-ky, kx, 0.0]])


def axis_rotation(axis, angle):
    """Return the rotation (3, 3) by ``angle`` about the unit vector ``axis`` (Rodrigues)."""
    k = skew(axis)
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def joint_path(model, base_link, tip_link):
    """
    Return the URDF joints from ``base_link`` down to ``tip_link`` (base first).

    Raises KinematicsError when a link is missing or the tip is not below the base.
    """
    for field, link in (('base_link', base_link), ('tip_link', tip_link)):
        if link not in model.links:
            raise KinematicsError(field, f'{field} {link!r} is not a link of {model.path}; '
                                  f'links: {sorted(model.links)}')
    parent_joint = {j.child: j for j in model.joints.values()}
    path, link = [], tip_link
    while link != base_link:
        joint = parent_joint.get(link)
        if joint is None:
            raise KinematicsError('tip_link', f'tip_link {tip_link!r} is not below base_link '
                                  f'{base_link!r} in {model.path} (no chain of joints connects '
                                  'them): choose a tip among the descendants of base_link')
        path.append(joint)
        link = joint.parent
    return path[::-1]


def chain_joint(joint, base_link, tip_link, joint_names):
    """
    Return ('fixed', None), or (kind, unit axis (3,)) of a moving joint on a chain or tree.

    ``kind`` is 'revolute' (also for continuous) or 'prismatic'. Raises KinematicsError for a
    floating or planar joint, a moving joint not in ``joint_names``, and a zero axis.
    """
    if joint.type not in MOVING + ('fixed',):
        raise KinematicsError('tip_link', f'joint {joint.name!r} between {base_link!r} '
                              f'and {tip_link!r} is {joint.type}: only revolute, '
                              'continuous, prismatic and fixed joints can be on a chain')
    if joint.type == 'fixed':
        return 'fixed', None
    if joint.name not in joint_names:
        raise KinematicsError('tip_link', f'joint {joint.name!r} ({joint.type}) is on the '
                              f'chain from {base_link!r} to {tip_link!r} but is not a '
                              f'controlled joint {list(joint_names)}: add it to joints '
                              'or choose a tip_link above it')
    axis = np.asarray(joint.axis, dtype=float)
    norm = float(np.linalg.norm(axis))
    if norm == 0.0:
        raise KinematicsError('tip_link', f'joint {joint.name!r} has a zero axis')
    return ('prismatic' if joint.type == 'prismatic' else 'revolute'), axis / norm


@dataclass(frozen=True, eq=False)
class Chain:
    """
    A serial chain's forward kinematics; positions in the ``base_link`` frame.

    :param base_link: the link whose frame positions are expressed in.
    :param tip_link: the link whose frame origin ``fk`` returns (or a point fixed in it, the
        ``tip_offset`` of ``from_urdf``: e.g. its centre of mass).
    :param joint_names: the moving joints of the chain, base to tip.
    :param joint_index: each moving joint's position in the scenario's (sorted) joint order.
    :param types: 'revolute' (also for continuous) or 'prismatic', per moving joint.
    :param axes: unit axis (3,) of each moving joint in its own frame.
    :param links: constant transforms (4, 4): ``links[0]`` base -> first moving joint frame,
        ``links[i]`` moving joint i-1 -> moving joint i, ``links[-1]`` last moving joint -> tip.
    :param limits: (lower, upper) per moving joint (±inf for continuous joints).
    """

    base_link: str
    tip_link: str
    joint_names: tuple
    joint_index: tuple
    types: tuple
    axes: tuple
    links: tuple
    limits: tuple

    @classmethod
    def from_urdf(cls, model, base_link, tip_link, joint_names, tip_offset=(0.0, 0.0, 0.0)):
        """
        Build the chain of a parsed URDF (``maml_robot.urdf.UrdfModel``).

        ``joint_names`` are the controlled joints in scenario order; every moving joint between
        base and tip must be one of them (KinematicsError names it otherwise). ``tip_offset``
        (3,) is a point fixed in the tip link's frame that the chain ends at (its origin by
        default; the gravity model uses each link's centre of mass).
        """
        path = joint_path(model, base_link, tip_link)
        names, types, axes, links, limits = [], [], [], [], []
        pending = np.eye(4)   # constant transform since the last moving joint
        for joint in path:
            kind, axis = chain_joint(joint, base_link, tip_link, joint_names)
            pending = pending @ origin_transform(joint)
            if kind == 'fixed':
                continue
            names.append(joint.name)
            types.append(kind)
            axes.append(tuple(axis.tolist()))
            links.append(pending)
            limits.append((-math.inf, math.inf) if joint.type == 'continuous'
                          else (joint.lower, joint.upper))
            pending = np.eye(4)
        end = np.eye(4)
        end[:3, 3] = tip_offset
        links.append(pending @ end)
        for link in links:
            link.setflags(write=False)
        index = tuple(list(joint_names).index(n) for n in names)
        return cls(base_link, tip_link, tuple(names), index, tuple(types), tuple(axes),
                   tuple(links), tuple(limits))

    def __post_init__(self):
        """Precompute the per-joint float tuples that ``fk`` walks (tip to base)."""
        steps = []
        for k in range(len(self.joint_names) - 1, -1, -1):
            r, t = self.links[k][:3, :3], self.links[k][:3, 3]
            steps.append((self.joint_index[k], self.types[k] == 'prismatic', self.axes[k],
                          tuple(r.ravel().tolist()), tuple(t.tolist())))
        object.__setattr__(self, '_steps', tuple(steps))
        object.__setattr__(self, '_tip', tuple(self.links[-1][:3, 3].tolist()))

    @property
    def size(self):
        """Return the number of moving joints on the chain."""
        return len(self.joint_names)

    def fk_list(self, q):
        """
        Return the tip position [x, y, z] (floats) for ``q``: ALL joints in scenario order.

        ``q`` is a list (or tuple) of floats; the observer calls this every control step.
        """
        x, y, z = self._tip
        cos, sin = math.cos, math.sin
        for index, prismatic, (kx, ky, kz), (r0, r1, r2, r3, r4, r5, r6, r7, r8), (
                tx, ty, tz) in self._steps:
            a = q[index]
            if prismatic:
                x, y, z = x + a * kx, y + a * ky, z + a * kz
            else:   # Rodrigues: v c + (k x v) s + k (k . v)(1 - c)
                c, s = cos(a), sin(a)
                d = (kx * x + ky * y + kz * z) * (1.0 - c)
                x, y, z = (x * c + (ky * z - kz * y) * s + kx * d,
                           y * c + (kz * x - kx * z) * s + ky * d,
                           z * c + (kx * y - ky * x) * s + kz * d)
            x, y, z = (r0 * x + r1 * y + r2 * z + tx, r3 * x + r4 * y + r5 * z + ty,
                       r6 * x + r7 * y + r8 * z + tz)
        return [x, y, z]

    def fk(self, q):
        """Return the tip position (3,) in the base_link frame; ``q`` (J,) in scenario order."""
        return np.array(self.fk_list([float(v) for v in q]))

    def transform(self, q):
        """Return the tip frame (4, 4) in the base_link frame (position and orientation)."""
        t = self.links[0].copy()
        for k in range(self.size):
            motion = np.eye(4)
            a = float(q[self.joint_index[k]])
            if self.types[k] == 'prismatic':
                motion[:3, 3] = np.multiply(self.axes[k], a)
            else:
                motion[:3, :3] = axis_rotation(self.axes[k], a)
            t = t @ motion @ self.links[k + 1]
        return t

    def batch_fk(self, qs):
        """Return tip positions (N, 3) for chain joint values ``qs`` (N, size), chain order."""
        qs = np.asarray(qs, dtype=float)
        pos = np.broadcast_to(self._tip, (qs.shape[0], 3)).copy()   # (N, 3)
        for k in range(self.size - 1, -1, -1):
            a, axis = qs[:, k:k + 1], np.asarray(self.axes[k])     # (N, 1), (3,)
            if self.types[k] == 'prismatic':
                pos = pos + a * axis
            else:
                c, s = np.cos(a), np.sin(a)
                pos = (pos * c + np.cross(axis, pos) * s
                       + axis * (pos @ axis)[:, None] * (1.0 - c))
            pos = pos @ self.links[k][:3, :3].T + self.links[k][:3, 3]
        return pos

    def batch_jacobian(self, qs):
        """
        Return (tip positions (N, 3), position Jacobians (N, size, 3)) for ``qs`` (N, size).

        ``qs`` are chain joint values (chain order), all in the base_link frame. Row k of a
        Jacobian is d tip / d q_k: axis_k x (tip - origin_k) for a revolute joint, axis_k for a
        prismatic one (``scenario_kinematics.solve_position``'s IK uses it).
        """
        tip, origins, axes = self._batch_frames(np.asarray(qs, dtype=float))
        prismatic = np.array([t == 'prismatic' for t in self.types], dtype=bool)
        rows = np.where(prismatic[None, :, None], axes,
                        np.cross(axes, tip[:, None, :] - origins))       # (N, size, 3)
        return tip, rows

    def _batch_frames(self, qs):
        """Return (tip (N, 3), joint origins (N, size, 3), joint axes (N, size, 3)), base frame."""
        n = qs.shape[0]
        rot = np.broadcast_to(self.links[0][:3, :3], (n, 3, 3))      # (N, 3, 3)
        pos = np.broadcast_to(self.links[0][:3, 3], (n, 3))          # (N, 3)
        origins, axes = np.empty((n, self.size, 3)), np.empty((n, self.size, 3))
        for k in range(self.size):
            axis = np.asarray(self.axes[k])
            origins[:, k], axes[:, k] = pos, rot @ axis
            a = qs[:, k]
            if self.types[k] == 'prismatic':
                pos = pos + axes[:, k] * a[:, None]
            else:   # Rodrigues, batched: I + s K + (1 - c) K^2
                cross = skew(axis)
                s, c = np.sin(a)[:, None, None], np.cos(a)[:, None, None]
                rot = rot @ (np.eye(3) + s * cross + (1.0 - c) * (cross @ cross))
            pos = pos + rot @ self.links[k + 1][:3, 3]
            rot = rot @ self.links[k + 1][:3, :3]
        return pos, origins, axes


@dataclass(frozen=True, eq=False)
class Tree:
    """
    Every moving joint's frame of a kinematic tree in one pass; all in the ``base_link`` frame.

    The tree is the union of the paths from ``base_link`` to some links (every branch, where a
    Chain is one path). Fixed joints fold into constant transforms, as on a Chain. Each joint's
    origin times its motion is formed for all joints at once; then one batched 4x4 product per
    depth places every branch's joints at that depth.

    :param base_link: the link whose frame everything is expressed in.
    :param joint_names: the moving joints of the tree, by depth (parents first).
    :param joint_index: each one's position in the caller's joint order.
    :param parents: each joint's nearest moving ancestor (an index into ``joint_names``); -1
        where only fixed joints lie between it and ``base_link``.
    :param types: 'revolute' (also for continuous) or 'prismatic', per moving joint.
    :param axes: (K, 3) unit axis of each moving joint in its own frame.
    :param origins: (K, 4, 4) constant transform to each joint's frame from its parent's (after
        the parent's motion; the base_link frame for -1).
    :param attached: {link: (joint, (4, 4) frame)} for every link on the tree: the moving joint
        (index, or -1 for none) whose motion carries the link, and the link's frame in it.

    Computed: ``descendants`` (K, K), row k marks joint k and every joint below it.
    """

    base_link: str
    joint_names: tuple
    joint_index: tuple
    parents: tuple
    types: tuple
    axes: np.ndarray
    origins: np.ndarray
    attached: dict

    @classmethod
    def from_urdf(cls, model, base_link, tip_links, joint_names):
        """
        Build the tree from ``base_link`` to each of ``tip_links`` of a parsed URDF.

        ``joint_names`` is the caller's joint order (``batch_frames`` takes positions in it);
        every moving joint on the tree must be one of them. Raises KinematicsError (naming the
        first tip whose path fails) as ``Chain.from_urdf`` does for that tip.
        """
        attached = {base_link: (None, np.eye(4))}     # link: (moving joint carrying it, frame)
        depth = {None: -1}
        moving = []                     # (joint name, parent joint name, kind, axis, origin)
        for tip in tip_links:
            for joint in joint_path(model, base_link, tip):
                kind, axis = chain_joint(joint, base_link, tip, joint_names)
                if joint.child in attached:
                    continue        # on the path to an earlier tip
                parent, frame = attached[joint.parent]
                frame = frame @ origin_transform(joint)
                if kind == 'fixed':
                    attached[joint.child] = (parent, frame)
                    continue
                depth[joint.name] = depth[parent] + 1
                moving.append((joint.name, parent, kind, axis, frame))
                attached[joint.child] = (joint.name, np.eye(4))
        moving.sort(key=lambda m: depth[m[0]])      # stable: by depth, then in path order
        names = [m[0] for m in moving]
        index = {None: -1, **{name: k for k, name in enumerate(names)}}
        attached = {link: (index[body], frame) for link, (body, frame) in attached.items()}
        axes = np.reshape([m[3] for m in moving], (-1, 3))
        origins = np.reshape([m[4] for m in moving], (-1, 4, 4))
        for array in (axes, origins, *(frame for _, frame in attached.values())):
            array.setflags(write=False)
        return cls(base_link, tuple(names), tuple(list(joint_names).index(n) for n in names),
                   tuple(index[m[1]] for m in moving), tuple(m[2] for m in moving), axes,
                   origins, attached)

    def __post_init__(self):
        """Precompute each joint's origin times its motion's terms, and the depth groups."""
        size = len(self.joint_names)
        depth = []
        for k, parent in enumerate(self.parents):
            if parent >= k:
                raise ValueError(f'Tree joint {self.joint_names[k]!r} comes before its parent '
                                 f'{self.joint_names[parent]!r}: list parents first '
                                 '(Tree.from_urdf does)')
            depth.append(0 if parent < 0 else depth[parent] + 1)
        slot = np.array([size if p < 0 else p for p in self.parents], dtype=int)
        levels = []
        for d in range(max(depth, default=-1) + 1):
            index = np.flatnonzero(np.equal(depth, d))
            contiguous = index.size == index[-1] - index[0] + 1
            levels.append((slice(index[0], index[-1] + 1) if contiguous else index, slot[index]))
        # motion of joint k by q: I + sin(t) K + (1 - cos(t)) K^2 + d A (t = q revolute, d = q
        # prismatic; K the axis' cross-product matrix, A the axis as a translation)
        prismatic = np.array([t == 'prismatic' for t in self.types], dtype=bool)
        k4 = np.zeros((size, 4, 4))
        k4[:, :3, :3] = np.reshape([skew(axis) for axis in self.axes], (size, 3, 3))
        a4 = np.zeros((size, 4, 4))
        a4[:, :3, 3] = self.axes
        terms = np.stack([self.origins, self.origins @ k4, self.origins @ k4 @ k4,
                          self.origins @ a4])                          # (4, K, 4, 4)
        descendants = np.eye(size)
        for k in range(size - 1, -1, -1):     # children come after their parent
            if self.parents[k] >= 0:
                descendants[self.parents[k]] += descendants[k]
        descendants.setflags(write=False)
        object.__setattr__(self, '_levels', tuple(levels))
        object.__setattr__(self, '_terms', terms)
        object.__setattr__(self, '_prismatic', prismatic)
        object.__setattr__(self, 'descendants', descendants)   # (K, K): row k, k's subtree

    def batch_frames(self, qs):
        """
        Return (frames (N, K, 4, 4), unit axes (N, K, 3)) of the moving joints for ``qs`` (N, J).

        ``qs`` are in the caller's joint order (``from_urdf``'s ``joint_names``). Each frame is
        the joint's frame after its own motion (its origin lies on its axis), in the base_link
        frame; the order is ``joint_names`` (the tree's).
        """
        qs = np.asarray(qs, dtype=float)
        n, size = qs.shape[0], len(self.joint_names)
        q = qs[:, list(self.joint_index)]                                # (N, K)
        turn = np.where(self._prismatic, 0.0, q)[..., None, None]       # (N, K, 1, 1)
        slide = np.where(self._prismatic, q, 0.0)[..., None, None]
        origin, k1, k2, a1 = self._terms
        local = origin + np.sin(turn) * k1 + (1.0 - np.cos(turn)) * k2 + slide * a1
        frames = np.empty((n, size + 1, 4, 4))       # slot ``size``: the base_link frame
        frames[:, size] = np.eye(4)
        for index, parent in self._levels:
            frames[:, index] = frames[:, parent] @ local[:, index]      # (N, L, 4, 4)
        frames = frames[:, :size]
        return frames, (frames[..., :3, :3] @ self.axes[..., None])[..., 0]
