"""
Observations, rewards and termination from a RobotState: the one place they are computed.

The PyBullet env and the ROS adapter node both call these functions, so training and deployment
see the same numbers. Nothing here knows about PyBullet or ROS.
"""

from dataclasses import dataclass
import functools
import math
import operator

from maml_robot.observation_terms import FIELD_VARIABLES, observation_term, OBSERVATION_TERMS
import numpy as np


@dataclass
class RobotState:
    """What a robot can report, joints in scenario order (sorted by name)."""

    joint_position: np.ndarray                   # (J,) rad or m, as measured
    joint_velocity: np.ndarray                   # (J,)
    goal: np.ndarray | None = None               # (3,) world (planar) or kinematics.base_link
    base_position: np.ndarray | None = None      # (3,) world
    base_orientation: np.ndarray | None = None   # (4,) quaternion x, y, z, w
    base_linear_velocity: np.ndarray | None = None   # (3,) world frame
    base_angular_velocity: np.ndarray | None = None  # (3,) world frame


@functools.lru_cache(maxsize=None)
def _chain(scenario):
    """Return the planar chain as plain tuples: (x0, y0, ((joint index, link length), ...))."""
    kin = scenario.kinematics
    if kin is None:
        raise ValueError(f'scenario {scenario.name!r} has no kinematics section')
    x, y, _ = kin['origin']
    return float(x), float(y), tuple(zip(kin['chain_index'], kin['link_lengths']))


def _tip_xy(scenario, q):
    """Return the fingertip (x, y) of the planar chain for joint positions ``q`` (a list)."""
    x, y, links = _chain(scenario)
    angle = 0.0
    for index, length in links:
        angle += q[index]
        x += length * math.cos(angle)
        y += length * math.sin(angle)
    return [x, y]


def fingertip_position(scenario, joint_position):
    """
    Forward kinematics of the scenario's tip: its position (3,).

    Planar chain: in the world (``kinematics.origin`` included). URDF chain: in the frame of
    ``kinematics.base_link`` (where the 3-D goals are).
    """
    q = [float(v) for v in joint_position]
    if _spatial(scenario):
        return np.array(scenario.kinematics['chain'].fk_list(q))
    x, y = _tip_xy(scenario, q)
    return np.array([x, y, scenario.kinematics['origin'][2]])


def _spatial(scenario):
    """Return True for 3-D reaching (urdf kinematics), False for the planar chain."""
    kin = scenario.kinematics
    return kin is not None and kin['type'] == 'urdf'


def base_pitch(quaternion):
    """Rotation about the world y axis of a body whose motion is planar (x-z), in (-pi, pi]."""
    qx, qy, qz, qw = quaternion
    return math.atan2(2 * (qw * qy - qx * qz), 1 - 2 * (qy * qy + qz * qz))


def up_z(quaternion):
    """World z component of the body's z axis (1 upright, -1 upside down)."""
    qx, qy, _, _ = quaternion
    return 1 - 2 * (qx * qx + qy * qy)


def _need(value, term):
    if value is None:
        raise ValueError(f'observation term {term!r} needs a RobotState field that is None')
    return value


def _vec(value, term):
    """Return a RobotState field as a list of floats."""
    if type(value) is list:
        return value   # read only: callers never change it
    if value is None:
        raise ValueError(f'observation term {term!r} needs a RobotState field that is None')
    return value.tolist() if isinstance(value, np.ndarray) else list(value)


def build_observation(scenario, state):
    """Return the observation vector (obs_dim,) float32 of ``state``."""
    try:
        return _observer(scenario)(state)
    except (TypeError, ValueError, IndexError):
        _check_state(scenario, state)   # raises the error that says what to change
        raise


def _check_state(scenario, state):
    """Raise a ValueError that names what ``state`` lacks for ``scenario``'s observation."""
    q = _vec(state.joint_position, 'joint_position')
    qd = _vec(state.joint_velocity, 'joint_velocity')
    if len(q) != scenario.act_dim or len(qd) != scenario.act_dim:
        raise ValueError(f'RobotState has {len(q)} joint positions and {len(qd)} velocities; '
                         f'scenario {scenario.name!r} expects {scenario.act_dim} (check the '
                         'joint count and order)')
    for term in scenario.observation:
        for field, size in OBSERVATION_TERMS[term].needs:
            value = _vec(getattr(state, field), term)
            if len(value) < size:
                raise ValueError(f'observation term {term!r} needs RobotState.{field} with at '
                                 f'least {size} numbers, got {len(value)}')


@functools.lru_cache(maxsize=None)
def _observer(scenario):
    """
    Return ``observe(state)``: the scenario's observation compiled into one straight-line function.

    The observation runs every control step in training and on the robot; written out for the
    scenario's terms and joint count (no per-term dispatch, no intermediate lists), it costs
    about half of a generic loop over the terms. The numbers are the same float operations in
    the same order. Wrong input raises a bare error here; build_observation turns it into one
    that says what to change.
    """
    j = scenario.act_dim
    terms = [observation_term(t) for t in scenario.observation]   # unknown: names the known
    entries = [e for t in terms for e in t.expressions(scenario.joint_names)]
    if len(entries) != scenario.obs_dim:
        raise ValueError(f'observation has shape ({len(entries)},); scenario {scenario.name!r} '
                         f'expects ({scenario.obs_dim},)')
    names = {'_cos': math.cos, '_sin': math.sin, '_base_pitch': base_pitch, '_vec': _vec,
             '_array': np.array, '_float32': np.float32}
    lines = ['def observe(state):']
    for var, field in (('q', 'joint_position'), ('d', 'joint_velocity')):
        lines += [f'    {var} = state.{field}',
                  f'    if type({var}) is not list:',
                  f'        {var} = _vec({var}, {field!r})',
                  f'    {"".join(f"{var}{i}, " for i in range(j))}= {var}']
    read = set()
    for term in terms:
        for field in [f for f in term.fields() if f not in read]:
            read.add(field)
            var = FIELD_VARIABLES[field]
            lines += [f'    {var} = state.{field}',
                      f'    if type({var}) is not list:',
                      f'        {var} = _vec({var}, {term.name!r})']
    tips = {t.kinematics for t in terms if t.tip}
    if 'planar_chain' in tips:
        x0, y0, links = _chain(scenario)   # as _tip_xy: the same operations in the same order
        names.update(_x0=x0, _y0=y0)
        lines += ['    a = 0.0', '    tx, ty = _x0, _y0']
        for k, (index, length) in enumerate(links):
            names[f'_l{k}'] = length
            lines += [f'    a += q{index}', f'    tx += _l{k} * _cos(a)',
                      f'    ty += _l{k} * _sin(a)']
    if 'urdf' in tips:
        names['_fk'] = scenario.kinematics['chain'].fk_list   # base_link frame
        lines.append('    ex, ey, ez = _fk(q)')
    lines.append(f'    return _array([{", ".join(entries)}], _float32)')
    exec('\n'.join(lines), names)   # noqa: S102 - our own source, built from validated terms
    return names['observe']


def observation_layout(scenario):
    """Return one name per observation entry, e.g. 'joint_velocity[elbow_joint]'."""
    return [name for t in scenario.observation
            for name in observation_term(t).layout(scenario.joint_names)]


def is_terminated(scenario, state):
    """Return True when the episode must end (e.g. the walker's torso fell)."""
    term = scenario.termination
    if not term:
        return False
    if 'base_height' in term:
        lo, hi = term['base_height']
        z = float(_need(state.base_position, 'termination.base_height')[2])
        if not lo <= z <= hi:
            return True
    if 'min_up' in term:
        if up_z(_need(state.base_orientation, 'termination.min_up')) < term['min_up']:
            return True
    return False


def compute_reward(scenario, state, action, next_state):
    """
    Return the reward of taking normalized ``action`` (J,) in ``state``, reaching ``next_state``.

    Terms (weights from the scenario): goal_distance = -|fingertip - goal| (x-y plane for a
    planar chain, 3-D for urdf kinematics: both in the base_link frame),
    control = -sum(action^2), forward_velocity = base x velocity, alive = 1 unless terminated.
    """
    total = 0.0
    for term, weight in scenario.reward.items():
        if term == 'goal_distance':
            q = _vec(next_state.joint_position, 'joint_position')
            goal = _vec(next_state.goal, 'reward goal_distance')
            if _spatial(scenario):
                value = -math.dist(scenario.kinematics['chain'].fk_list(q), goal[:3])
            else:
                tip = _tip_xy(scenario, q)
                value = -math.hypot(tip[0] - goal[0], tip[1] - goal[1])
        elif term == 'control':
            if type(action) is not list:   # the env passes floats already
                a = action.tolist() if isinstance(action, np.ndarray) else action
                action = [float(v) for v in a]
            value = -sum(map(operator.mul, action, action))
        elif term == 'forward_velocity':
            value = float(_need(next_state.base_linear_velocity, 'reward forward_velocity')[0])
        elif term == 'alive':
            value = 0.0 if is_terminated(scenario, next_state) else 1.0
        else:
            raise ValueError(f'unknown reward term {term!r}')
        total += weight * value
    return float(total)
