"""
A scenario's control section, checked against its URDF: how actions reach the joints.

``mode`` torque, position or velocity (maml_robot.actuation), ``rate_hz``, per-joint
``action_scale``, position mode's PD gains ``kp``/``kd`` and ``default_joint_position``, velocity
mode's loop gain ``kv``, the safe ``hold`` (torque mode's ``gravity`` hold built from the URDF,
maml_robot.gravity), and what happens to the URDF's moving joints that are not controlled
(``uncontrolled: free | lock``).
``r`` is the scenario's reader: its ``fail`` raises the ScenarioError that names the file and
key, its ``per_joint`` reads a number or a joint -> number mapping.
"""

import math

from maml_robot.actuation import Actuation, HOLDS, MODES
from maml_robot.gravity import GravityModel
from maml_robot.kinematics import KinematicsError
import numpy as np

CONTROL_KEYS = ('mode', 'rate_hz', 'action_scale', 'kp', 'kd', 'default_joint_position', 'kv',
                'hold', 'uncontrolled')
MODE_KEYS = {'position': ('kp', 'kd', 'default_joint_position'), 'velocity': ('kv',)}
"""Keys only one mode takes (the others refuse them, naming the mode that does)."""
DEFAULT_HOLD = {'torque': 'zero', 'position': 'default', 'velocity': 'stop'}
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
    _mode_keys(r, control, mode)
    position = mode == 'position'
    effort = np.array([j.effort for j in joints], dtype=float)
    speed = np.array([j.velocity or math.inf for j in joints], dtype=float)   # 0: unknown
    scale = _action_scale(r, control, names, effort, speed, mode)
    limits = np.array([(j.lower, j.upper) if j.type != 'continuous' and j.lower is not None
                       else (-math.inf, math.inf) for j in joints], dtype=float)
    zeros = np.zeros(len(names))
    default, kp, kd = zeros, zeros, zeros
    if position:
        default, kp, kd = _position_settings(r, control, names, limits, initial_q)
    kv = _velocity_gain(r, control, names) if mode == 'velocity' else zeros
    hold = control.get('hold', DEFAULT_HOLD[mode])
    gravity_model = _gravity_hold(r, hold, model, names, base, gravity) \
        if hold == 'gravity' and mode == 'torque' else None
    if hold not in HOLDS[mode]:
        advice = ' (gravity compensation is a torque-mode hold)' if hold == 'gravity' else ''
        r.fail('control.hold', f'one of {list(HOLDS[mode])} in {mode} mode{advice}', hold)
    uncontrolled = control.get('uncontrolled', 'free')
    if uncontrolled not in UNCONTROLLED:
        r.fail('control.uncontrolled', f'one of {list(UNCONTROLLED)} (the URDF joints not in '
               'joints: move freely, or held at their initial position)', uncontrolled)
    actuation = Actuation(mode=mode, action_scale=scale, effort_limit=effort,
                          position_limits=limits, default_position=default, kp=kp, kd=kd,
                          hold=hold, gravity=gravity_model, kv=kv, velocity_limit=speed)
    return actuation, uncontrolled


def _mode_keys(r, control, mode):
    """Refuse a key of another mode, naming the mode that takes it and what this one uses."""
    for owner, keys in MODE_KEYS.items():
        for key in keys:
            if key in control and mode != owner:
                own = ', '.join(f'control.{k}' for k in MODE_KEYS.get(mode, ())) or 'no gains'
                r.fail(f'control.{key}', f'no such key in {mode} mode (it is a {owner}-mode key: '
                       f'set control.mode: {owner}, or remove it; {mode} mode takes {own})',
                       control[key])


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


def _action_scale(r, control, names, effort, speed, mode):
    """
    Return the (J,) action scale: N·m per unit of action (torque), rad (position), rad/s.

    Torque and velocity modes default to the URDF limit (effort, velocity) and may not exceed
    it; a mapping that names some joints leaves the others at it. Position mode needs one.
    """
    limit = {'torque': effort, 'velocity': speed}.get(mode)
    if 'action_scale' not in control:
        if limit is None:
            r.fail('control.action_scale', 'rad (m) of target per unit of action in position '
                   'mode, e.g. 0.25', 'missing')
        unknown = [n for n, v in zip(names, limit) if not math.isfinite(v)]
        if unknown:
            r.fail('control.action_scale', f'rad/s (m/s) per unit of action: the URDF gives '
                   f'{unknown} no velocity limit to default to, e.g. 2.0', 'missing')
        return limit.copy()     # a full action is the URDF limit
    given = control['action_scale']
    if isinstance(given, dict) and limit is not None:   # joints not named keep the URDF limit
        given = {**dict(zip(names, limit.tolist())), **given}
    scale = r.per_joint(given, 'control.action_scale', names, None)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        r.fail('control.action_scale', 'positive finite numbers', scale.tolist())
    over = [] if limit is None else [n for n, s, e in zip(names, scale, limit)
                                     if s > e * (1 + 1e-9)]
    if over:
        what = 'effort' if mode == 'torque' else 'velocity'
        r.fail('control.action_scale', f'at most the URDF {what} limit {limit.tolist()} '
               f'({mode} mode: the {what} of a full action)', f'larger for {over}')
    return scale


def _velocity_gain(r, control, names):
    """Return velocity mode's loop gain kv (J,) (N·m·s/rad, N·s/m): required, > 0."""
    if 'kv' not in control:
        r.fail('control.kv', 'the velocity loop gain in N·m·s/rad (N·s/m for a prismatic '
               'joint), a number or a joint -> number mapping, e.g. 5.0', 'missing')
    kv = r.per_joint(control['kv'], 'control.kv', names, None)
    if not np.all(np.isfinite(kv)) or np.any(kv <= 0):
        r.fail('control.kv', 'kv > 0 for every joint (effort = kv * (target - velocity))',
               kv.tolist())
    return kv


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


CONTROL_RTOL = 1e-3
"""Relative tolerance of ``control_differences`` (as the adapter's checks of a checkpoint)."""


def control_differences(trained, actuation, trained_rate_hz, rate_hz):
    """
    Return what differs between two control sections, one text per key (empty: none).

    A policy's action means a joint command only under the control it was trained with: the
    mode (an effort, a position target or a velocity), the action scale, the control rate,
    position mode's PD gains and default pose, velocity mode's loop gain (those of one mode
    only when both are in it). The safe hold is not compared: it acts only where the policy
    does not.

    :param trained: the Actuation a checkpoint was trained with; ``actuation`` the one here.
    """
    out = []
    if trained.mode != actuation.mode:
        out.append(f'control.mode: {trained.mode} in training, {actuation.mode} here')
    if not math.isclose(trained_rate_hz, rate_hz, rel_tol=CONTROL_RTOL):
        out.append(f'control.rate_hz: {trained_rate_hz:g} in training, {rate_hz:g} here')
    pairs = [('action_scale', trained.action_scale, actuation.action_scale)]
    if trained.mode == actuation.mode:
        pairs += [('kp', trained.kp, actuation.kp), ('kd', trained.kd, actuation.kd),
                  ('default_joint_position', trained.default_position,
                   actuation.default_position), ('kv', trained.kv, actuation.kv)]
    for key, a, b in pairs:
        if np.shape(a) != np.shape(b) or not np.allclose(a, b, rtol=CONTROL_RTOL, atol=1e-9):
            out.append(f'control.{key}: {_values(a)} in training, {_values(b)} here')
    return out


def _values(array):
    """Return a short text of a per-joint array: one number when all joints share it."""
    values = np.asarray(array, dtype=float)
    if values.size and np.all(values == values.flat[0]):
        return f'{values.flat[0]:g} (every joint)'
    return '[' + ', '.join(f'{v:g}' for v in values) + ']'
