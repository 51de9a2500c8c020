"""Convert ROS messages to and from arrays and RobotState fields (joints mapped by NAME)."""

import math

from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# ~/episode_return keeps its history for late joiners (a monitor or the demo that subscribes
# after the first episodes ended still gets every episode, in order).
EPISODE_RETURN_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
# robot_state_publisher's robot_description: one latched message, so a node that starts later
# still gets it.
ROBOT_DESCRIPTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL)


def joint_arrays(msg: JointState, joint_names) -> tuple:
    """
    Return (position, velocity) in ``joint_names`` order from a JointState, mapped by name.

    Joints may come in any order; joints not in ``joint_names`` are ignored. Raises ValueError
    naming the joint that is missing or repeated, or the field whose length does not match
    ``name``.
    """
    names = list(msg.name)
    if len(msg.position) != len(names):
        raise ValueError(f'joint_states has {len(names)} names but {len(msg.position)} '
                         'positions; each named joint needs a position')
    if len(msg.velocity) != len(names):
        raise ValueError(f'joint_states has {len(names)} names but {len(msg.velocity)} '
                         'velocities; the policy needs joint velocities')
    index = {name: i for i, name in enumerate(names)}
    repeated = [name for name in joint_names if names.count(name) > 1]
    if repeated:
        raise ValueError(f'joint {repeated[0]!r} appears {names.count(repeated[0])} times in '
                         f'joint_states {names}; which one is meant is unknown')
    missing = [name for name in joint_names if name not in index]
    if missing:
        raise ValueError(f'joint {missing[0]!r} missing from joint_states; have {names}')
    order = [index[name] for name in joint_names]
    position = np.asarray(msg.position, dtype=np.float64)[order]   # (J,)
    velocity = np.asarray(msg.velocity, dtype=np.float64)[order]   # (J,)
    return position, velocity


def joint_state_msg(joint_names, position, velocity, effort, stamp) -> JointState:
    """Build a JointState in the given joint order."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(joint_names)
    msg.position = [float(v) for v in position]
    msg.velocity = [float(v) for v in velocity]
    msg.effort = [float(v) for v in effort]
    return msg


def point_array(msg: PointStamped) -> np.ndarray:
    """Return the (3,) point of a PointStamped."""
    return np.array([msg.point.x, msg.point.y, msg.point.z], dtype=np.float64)


def point_msg(xyz, frame_id: str, stamp) -> PointStamped:
    """Build a PointStamped."""
    msg = PointStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in xyz)
    return msg


def quat_rotate(q, v) -> np.ndarray:
    """Rotate vector ``v`` (3,) by the unit quaternion ``q`` (x, y, z, w)."""
    x, y, z, w = (float(c) for c in q)
    u = np.array([x, y, z])
    v = np.asarray(v, dtype=np.float64)
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def quat_conjugate(q) -> np.ndarray:
    """Return the inverse rotation of a unit quaternion (x, y, z, w)."""
    x, y, z, w = (float(c) for c in q)
    return np.array([-x, -y, -z, w])


def odometry_fields(msg: Odometry) -> dict:
    """
    Return the RobotState base fields from an Odometry message.

    ROS convention: the pose is in ``header.frame_id`` (world), the twist in
    ``child_frame_id`` (the base). RobotState wants world-frame velocities, so the twist is
    rotated by the pose's orientation.
    """
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    orientation = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
    norm = float(np.linalg.norm(orientation))
    if not (math.isfinite(norm) and norm > 1e-6):
        raise ValueError(f'odom orientation {orientation} is not a unit quaternion')
    orientation = orientation / norm
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    return {
        'base_position': np.array([p.x, p.y, p.z], dtype=np.float64),
        'base_orientation': orientation,
        'base_linear_velocity': quat_rotate(orientation, [lin.x, lin.y, lin.z]),
        'base_angular_velocity': quat_rotate(orientation, [ang.x, ang.y, ang.z]),
    }


def odometry_msg(state, frame_id: str, child_frame_id: str, stamp) -> Odometry:
    """Build an Odometry from a RobotState's base fields (twist in the base frame)."""
    msg = Odometry()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.child_frame_id = child_frame_id
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in state.base_position)
    q = np.asarray(state.base_orientation, dtype=np.float64)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(v) for v in q)
    inverse = quat_conjugate(q)
    lin = quat_rotate(inverse, state.base_linear_velocity)
    ang = quat_rotate(inverse, state.base_angular_velocity)
    twist = msg.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in lin)
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in ang)
    return msg


def command_msg(effort, joint_names=None) -> Float64MultiArray:
    """Build a forward_command_controller command (efforts in checkpoint joint order)."""
    msg = Float64MultiArray()
    values = [float(v) for v in effort]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'refusing to publish a non-finite command {values}')
    if joint_names is not None:
        msg.layout.dim = [MultiArrayDimension(label='joints', size=len(values), stride=1)]
    msg.data = values
    return msg


def command_efforts(msg: Float64MultiArray, num_joints: int) -> np.ndarray:
    """Return the (J,) values of a command; ValueError on a wrong length or non-finite value."""
    data = np.asarray(msg.data, dtype=np.float64)
    if data.shape != (num_joints,):
        raise ValueError(f'command has {data.size} values, expected {num_joints} '
                         '(one value per joint, in the scenario joint order: an effort, position '
                         'target or velocity, per the control mode)')
    if not np.all(np.isfinite(data)):
        raise ValueError(f'command contains non-finite values {data.tolist()}')
    return data


def trajectory_msg(joint_names, command, position: bool, seconds: float) -> JointTrajectory:
    """
    Build a one-point JointTrajectory (for a JointTrajectoryController) from a joint command.

    Position targets go to ``positions`` (position mode), efforts to ``effort`` (torque mode);
    the point is to be reached ``seconds`` (one control period) from now (zero stamp = now).
    """
    values = [float(v) for v in command]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'refusing to publish a non-finite command {values}')
    point = JointTrajectoryPoint()
    if position:
        point.positions = values
    else:
        point.effort = values
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    point.time_from_start.sec, point.time_from_start.nanosec = sec, nanosec
    msg = JointTrajectory()
    msg.joint_names = [str(n) for n in joint_names]
    msg.points = [point]
    return msg
