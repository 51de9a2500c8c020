"""
A scenario's control section, checked against its URDF: how actions reach the joints.

``mode`` torque or position (maml_robot.actuation), ``rate_hz``, per-joint ``action_scale``,
position mode's PD gains ``kp``/``kd``, ``default_joint_position`` and safe ``hold`` (torque mode's
``gravity`` hold built from the URDF, maml_robot.gravity), and what happens to the URDF's moving
joints that are not controlled (``uncontrolled: free | lock``).
``r`` is the scenario's reader: its ``fail`` raises the ScenarioError that names the file and
key, its ``per_joint`` reads a number or a joint -> number mapping.
"""

import math

from maml_robot.actuation import Actuation, HOLDS, MODES
from maml_robot.gravity import GravityModel
from maml_robot.kinematics import KinematicsError
import numpy as np

CONTROL_KEYS = ('mode', 'rate_hz', 'action_scale', 'kp', 'kd', 'default_joint_position',
                'hold', 'uncontrolled')
POSITION_KEYS = ('kp', 'kd', 'default_joint_position')
UNCONTROLLED = ('free', 'lock')


def control_section(r, control, names, model, initial_q, base, gravity):
    """
    Return (Actuation, uncontrolled) of the validated ``control`` mapping.

    ``model`` is the parsed URDF, ``base`` the checked base mapping (``fixed``), ``gravity`` the
    world's z acceleration (``sim.gravity``): what a gravity hold needs.
    """
    joints = [model.joints[n] for n in names]
    mode = control['mode']
    if mode not in MODES:
        r.fail('control.mode', f'one of {list(MODES)}', mode)
    position = mode == 'position'
    for key in POSITION_KEYS:
        if key in control and not position:
            r.fail(f'control.{key}', 'no such key in torque mode (set control.mode: position)',
                   control[key])
    effort = np.array([j.effort for j in joints], dtype=float)
    scale = _action_scale(r, control, names, effort, position)
    limits = np.array([(j.lower, j.upper) if j.type != 'continuous' and j.lower is not None
                       else (-math.inf, math.inf) for j in joints], dtype=float)
    zeros = np.zeros(len(names))
    default, kp, kd = zeros, zeros, zeros
    if position:
        default, kp, kd = _position_settings(r, control, names, limits, initial_q)
    hold = control.get('hold', 'default' if position else 'zero')
    gravity_model = _gravity_hold(r, hold, model, names, base, gravity) \
        if hold == 'gravity' and not position else None
    if hold not in HOLDS[mode]:
        advice = ' (the PD holds a pose; gravity compensation is a torque-mode hold)' \
            if hold == 'gravity' else ''
        r.fail('control.hold', f'one of {list(HOLDS[mode])} in {mode} mode{advice}', hold)
    uncontrolled = control.get('uncontrolled', 'free')
    if uncontrolled not in UNCONTROLLED:
        r.fail('control.uncontrolled', f'one of {list(UNCONTROLLED)} (the URDF joints not in '
               'joints: move freely, or held at their initial position)', uncontrolled)
    actuation = Actuation(mode=mode, action_scale=scale, effort_limit=effort,
                          position_limits=limits, default_position=default, kp=kp, kd=kd,
                          hold=hold, gravity=gravity_model)
    return actuation, uncontrolled


def _gravity_hold(r, hold, model, names, base, gravity):
    """
    Return the GravityModel of ``hold: gravity``: a fixed base, bolted to the world unrotated.

    The scenario places a fixed base at ``base.position`` without rotating it, so gravity is
    ``(0, 0, sim.gravity)`` in the URDF root link's frame.
    """
    if not base['fixed']:
        r.fail('control.hold', "'zero' for a floating base (base.fixed: false): gravity "
               'compensation needs a base bolted to the world (for a legged robot use '
               'control.mode: position, whose hold keeps a standing pose)', hold)
    try:
        return GravityModel.from_urdf(model, names, (0.0, 0.0, gravity))
    except KinematicsError as err:
        r.fail('control.hold', f"'zero' for this URDF ({err})", hold)


def _action_scale(r, control, names, effort, position):
    """Return the (J,) action scale: N·m per unit in torque mode (<= effort), rad in position."""
    if 'action_scale' not in control:
        if position:
            r.fail('control.action_scale', 'rad (m) of target per unit of action in position '
                   'mode, e.g. 0.25', 'missing')
        return effort.copy()    # torque mode's default: a full action is the URDF effort limit
    given = control['action_scale']
    if isinstance(given, dict) and not position:   # joints not named keep the URDF limit
        given = {**dict(zip(names, effort.tolist())), **given}
    scale = r.per_joint(given, 'control.action_scale', names, None)
    if np.any(scale <= 0):
        r.fail('control.action_scale', 'positive numbers', scale.tolist())
    over = [n for n, s, e in zip(names, scale, effort) if s > e * (1 + 1e-9)]
    if over and not position:
        r.fail('control.action_scale', f'at most the URDF effort limit {effort.tolist()} '
               '(torque mode: the effort of a full action)', f'larger for {over}')
    return scale


def _position_settings(r, control, names, limits, initial_q):
    """Return (default pose, kp, kd), each (J,), of a position-mode control section."""
    default = initial_q.copy()
    if 'default_joint_position' in control:
        default = r.per_joint(control['default_joint_position'],
                              'control.default_joint_position', names, 0.0)
    if np.any((default < limits[:, 0]) | (default > limits[:, 1])):
        r.fail('control.default_joint_position', f'positions within the URDF limits '
               f'{limits.tolist()}', default.tolist())
    kp = r.per_joint(control.get('kp'), 'control.kp', names, None)
    kd = r.per_joint(control.get('kd', 0.0), 'control.kd', names, 0.0)
    if np.any(kp <= 0) or np.any(kd < 0):
        r.fail('control.kp', 'kp > 0 and kd >= 0 for every joint', [kp.tolist(), kd.tolist()])
    return default, kp, kd
