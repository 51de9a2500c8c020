"""
The robot's own joint limits (its URDF) checked against those a checkpoint was trained with.

The adapter clamps to the robot's limits, not to numbers in a file: the URDF the robot
publishes on ``robot_description`` (or a file), compared joint by joint with the scenario the
checkpoint was trained on (rebuilt from its snapshot, whose URDF is hash-checked). Joints
missing from the robot, other joint types, or effort, position or velocity limits apart by
more than a relative tolerance refuse the robot, naming each joint and both values; within the
tolerance the command is clamped to the tighter of the two.
"""

from dataclasses import dataclass, replace
import math

from maml_robot.actuation import Actuation
from maml_robot.urdf import MOVING_TYPES, parse_urdf, parse_urdf_text
import numpy as np

ROBOT_DESCRIPTION_TOPIC = 'robot_description'


@dataclass(frozen=True, eq=False)
class JointLimits:
    """Limits of the controlled joints, arrays in checkpoint (scenario) joint order."""

    source: str
    """Where they were read: a URDF file, the robot_description topic."""
    joint_names: tuple
    types: tuple
    """URDF joint types: revolute, continuous or prismatic."""
    effort: np.ndarray
    """(J,) N·m, N for prismatic joints; inf: none given."""
    position: np.ndarray
    """(J, 2) lower, upper (rad, m); ±inf for continuous joints."""
    velocity: np.ndarray
    """(J,) rad/s, m/s; inf: none given (or 0, as some URDFs write 'unknown')."""


def robot_model(path: str = '', text=None, where: str = ROBOT_DESCRIPTION_TOPIC):
    """Return the UrdfModel of a URDF file (``path``) or text, or None when neither is given."""
    if path:
        return parse_urdf(path)
    if text is None:
        return None
    return parse_urdf_text(text, where)


def urdf_limits(model, joint_names, source: str) -> JointLimits:
    """
    Return the limits of ``joint_names`` in a UrdfModel.

    ValueError names the joints the URDF lacks (or that do not move) and lists what it has.
    """
    missing = [n for n in joint_names
               if n not in model.joints or model.joints[n].type not in MOVING_TYPES]
    if missing:
        raise ValueError(f'{source}: the robot has no moving joint {missing[0]!r} (the '
                         f'checkpoint controls {list(joint_names)}; the moving joints of the '
                         f'robot are {model.moving_joints}); use a checkpoint trained for this '
                         'robot, or rename the joint in its URDF')
    joints = [model.joints[n] for n in joint_names]
    position = [(j.lower, j.upper) if j.type != 'continuous' and j.lower is not None
                and j.upper is not None else (-math.inf, math.inf) for j in joints]
    return JointLimits(
        source=source, joint_names=tuple(joint_names), types=tuple(j.type for j in joints),
        effort=np.array([math.inf if j.effort is None else j.effort for j in joints]),
        position=np.array(position, dtype=np.float64).reshape(len(joints), 2),
        velocity=np.array([j.velocity or math.inf for j in joints], dtype=np.float64))


def trained_limits(scenario) -> JointLimits:
    """Return the limits a scenario's policy was trained with (its URDF, as the sim used it)."""
    model = parse_urdf(scenario.urdf_path)
    names = tuple(scenario.joint_names)
    return JointLimits(
        source=str(scenario.urdf_path), joint_names=names,
        types=tuple(model.joints[n].type for n in names),
        effort=np.asarray(scenario.effort_limits, dtype=np.float64),
        position=np.asarray(scenario.position_limits, dtype=np.float64),
        velocity=np.asarray(scenario.velocity_limits, dtype=np.float64))


def _close(a: float, b: float, tolerance: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= tolerance * max(abs(a), abs(b)) + 1e-12


def limit_differences(robot: JointLimits, trained: JointLimits, tolerance: float) -> list:
    """Return one line per joint and quantity where the robot differs from the trained limits."""
    out = []
    for j, name in enumerate(trained.joint_names):
        if robot.types[j] != trained.types[j]:
            out.append(f'joint {name!r} is {robot.types[j]} on the robot, {trained.types[j]} '
                       'in training')
            continue
        pairs = (('effort limit', robot.effort[j], trained.effort[j]),
                 ('lower position limit', robot.position[j, 0], trained.position[j, 0]),
                 ('upper position limit', robot.position[j, 1], trained.position[j, 1]),
                 ('velocity limit', robot.velocity[j], trained.velocity[j]))
        out += [f'joint {name!r} {what} {got:g} on the robot, {want:g} in training'
                for what, got, want in pairs if not _close(float(got), float(want), tolerance)]
    return out


def check_robot_limits(robot: JointLimits, trained: JointLimits, tolerance: float) -> None:
    """Raise ValueError listing every limit of ``robot`` that differs from ``trained``."""
    differences = limit_differences(robot, trained, tolerance)
    if differences:
        raise ValueError(
            f'the robot description ({robot.source}) does not match the robot the checkpoint '
            f'was trained on ({trained.source}) within limit_tolerance {tolerance:g}: '
            + '; '.join(differences) + '. Use a checkpoint trained for this robot, correct '
            'the URDF, or raise limit_tolerance if the difference is intended')


def tighter(robot: JointLimits, trained: JointLimits) -> JointLimits:
    """Return the tighter of two sets of limits of the same joints, joint by joint."""
    position = np.stack([np.maximum(robot.position[:, 0], trained.position[:, 0]),
                         np.minimum(robot.position[:, 1], trained.position[:, 1])], axis=1)
    return replace(robot, effort=np.minimum(robot.effort, trained.effort), position=position,
                   velocity=np.minimum(robot.velocity, trained.velocity))


def limit_spec(spec, limits: JointLimits):
    """Return the AdapterSpec ``spec`` clamping to ``limits`` (its actuation's limits replaced)."""
    actuation = spec.actuation or Actuation.torque(spec.action_scale)
    actuation = replace(actuation, effort_limit=np.minimum(actuation.effort_limit, limits.effort),
                        position_limits=limits.position.copy(),
                        velocity_limit=np.minimum(actuation.velocity_limit, limits.velocity))
    return replace(spec, actuation=actuation, position_limits=limits.position.copy(),
                   velocity_limits=limits.velocity.copy(), limits_source=limits.source)


def robot_limited_spec(spec, scenario, model=None, source: str = '', tolerance: float = 0.01):
    """
    Return ``spec`` clamping to the robot's limits, checked against the scenario's.

    ``model`` is the robot's UrdfModel (None: no robot description; the scenario's own URDF
    limits are used). ValueError says what differs.
    """
    trained = trained_limits(scenario)
    if model is None:
        return limit_spec(spec, trained)
    robot = urdf_limits(model, spec.joint_names, source or str(model.path))
    check_robot_limits(robot, trained, tolerance)
    return limit_spec(spec, tighter(robot, trained))
