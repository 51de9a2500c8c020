"""
A scenario's kinematics and goal sections, checked against its URDF.

``kinematics`` is a planar chain (the reacher: joints, link lengths and origin, each checked
against the URDF) or ``type: urdf`` (any serial chain of the URDF, ``maml_robot.kinematics``);
``goal`` is a radius range (planar) or a 3-D box or shell in the base link's frame whose
reachability is checked by inverse kinematics (``solve_position``, damped least squares on a
Chain; the position-mode reference controller uses it too). ``r`` is the scenario's reader: its
``fail`` raises the ScenarioError that names the file and key.
"""

import math

from maml_robot.kinematics import Chain, KinematicsError
from maml_robot.observation_terms import PLANAR_TERMS, SPATIAL_TERMS
import numpy as np

PROBES = {'box': 'its 3x3x3 grid of corners, edge and face midpoints and centre',
          'shell': '26 directions (axes, face and space diagonals) at both radii'}
_REACH_CACHE = {}   # (chain signature, region, start) -> unreachable probe points


def kinematics_section(r, data, names, model, base):
    """Return the validated kinematics section (None if absent); errors name the key."""
    if 'kinematics' not in data:
        return None
    k = r.mapping(data['kinematics'], 'kinematics', required=('type',))
    if k['type'] == 'urdf':
        return _urdf_kinematics(r, k, names, model)
    if k['type'] != 'planar_chain':
        r.fail('kinematics.type', "'planar_chain' or 'urdf'", k['type'])
    keys = ('type', 'chain', 'link_lengths', 'origin', 'tip_link')
    r.mapping(k, 'kinematics', keys, required=keys)
    chain = r.names(k['chain'], 'kinematics.chain', set(names), 'controlled joints')
    lengths = r.vector(k['link_lengths'], 'kinematics.link_lengths', len(chain))
    origin = r.vector(k['origin'], 'kinematics.origin', 3)
    _check_planar_chain(r, k, model, names, chain, lengths, origin, base)
    return {'type': 'planar_chain', 'chain': chain,
            'chain_index': tuple(names.index(c) for c in chain),
            'link_lengths': lengths, 'origin': origin, 'tip_link': k['tip_link']}


def _chain(r, model, base_link, tip_link, names, base_key):
    """Return the URDF Chain from base_link to tip_link; errors name the kinematics key."""
    try:
        return Chain.from_urdf(model, base_link, tip_link, names)
    except KinematicsError as err:
        key = base_key if err.field == 'base_link' else 'kinematics.tip_link'
        got = base_link if err.field == 'base_link' else tip_link
        r.fail(key, str(err), got)


def _check_planar_chain(r, k, model, names, chain, lengths, origin, base):
    """Check the planar chain against the URDF: the joints, link lengths and origin it gives."""
    start = model.joints[chain[0]].parent
    urdf = _chain(r, model, start, k['tip_link'], names, 'kinematics.chain')
    if urdf.joint_names != chain:
        r.fail('kinematics.chain', f'the moving joints from {start!r} (above the first chain '
               f'joint) to tip_link in the URDF, base to tip: {list(urdf.joint_names)}',
               list(chain))
    for i, (want, link) in enumerate(zip(lengths, urdf.links[1:])):
        derived = float(np.linalg.norm(link[:3, 3]))
        if abs(derived - want) > 1e-6:
            r.fail(f'kinematics.link_lengths[{i}]', f'{derived:g} m (from the URDF)', want)
    try:   # the origin is known when nothing moves between the fixed root and the chain
        mount = Chain.from_urdf(model, model.root, start, names)
    except KinematicsError:
        return
    if base['fixed'] and not mount.size:
        derived = np.add(r.vector(base.get('position', [0, 0, 0]), 'base.position', 3),
                         (mount.links[0] @ urdf.links[0])[:3, 3])
        if np.abs(derived - origin).max() > 1e-6:
            r.fail('kinematics.origin', f'{derived.tolist()} (base.position + the URDF)',
                   list(origin))


def _urdf_kinematics(r, k, names, model):
    """Return the urdf kinematics: the Chain from base_link to tip_link."""
    r.mapping(k, 'kinematics', ('type', 'base_link', 'tip_link'),
              required=('type', 'base_link', 'tip_link'))
    chain = _chain(r, model, k['base_link'], k['tip_link'], names, 'kinematics.base_link')
    if not chain.size:
        r.fail('kinematics.tip_link', f'a link below a controlled joint of base_link '
               f'{k["base_link"]!r}', k['tip_link'])
    return {'type': 'urdf', 'base_link': k['base_link'], 'tip_link': k['tip_link'],
            'chain': chain}


def goal_section(r, data, kin, used, initial):
    """Return (planar goal radius or None, 3-D goal region or None); check they are reachable."""
    if kin is None:
        r.fail('kinematics', f'a kinematics section (needed by {sorted(used)})', None)
    wrong = set(used) & set(SPATIAL_TERMS if kin['type'] == 'planar_chain' else PLANAR_TERMS)
    if wrong:
        other = 'urdf' if kin['type'] == 'planar_chain' else 'planar_chain'
        r.fail('observation', f'terms of {kin["type"]} kinematics ({sorted(wrong)} need '
               f'kinematics.type {other})', sorted(wrong))
    if kin['type'] == 'planar_chain':
        g = r.mapping(data.get('goal'), 'goal', ('radius',), ('radius',))
        goal = r.range_(g['radius'], 'goal.radius', 0.0)[0]
        if goal[1] > sum(kin['link_lengths']):
            r.fail('goal.radius', f'goals within reach (<= {sum(kin["link_lengths"])})', goal)
        return goal, None
    g = r.mapping(data.get('goal'), 'goal', ('box', 'shell'))
    if len(g) != 1:
        r.fail('goal', 'exactly one of box: {low, high} or shell: {center, radius} (base frame)',
               sorted(g))
    if 'box' in g:
        b = r.mapping(g['box'], 'goal.box', ('low', 'high'), ('low', 'high'))
        low, high = r.vector(b['low'], 'goal.box.low', 3), r.vector(b['high'], 'goal.box.high', 3)
        if any(lo > hi for lo, hi in zip(low, high)):
            r.fail('goal.box', 'low <= high on every axis', [list(low), list(high)])
        region = {'type': 'box', 'low': low, 'high': high}
    else:
        sh = r.mapping(g['shell'], 'goal.shell', ('center', 'radius'), ('center', 'radius'))
        region = {'type': 'shell', 'center': r.vector(sh['center'], 'goal.shell.center', 3),
                  'radius': r.range_(sh['radius'], 'goal.shell.radius', 0.0)[0]}
    chain = kin['chain']
    start = tuple(float(initial[i]) for i in chain.joint_index)
    missed = _unreachable_probes(chain, region, start)
    if missed:
        far = float(np.linalg.norm(np.subtract(missed[0], chain.links[0][:3, 3])))
        r.fail(f'goal.{region["type"]}', f'a region the tip {kin["tip_link"]!r} can reach '
               f'(inverse kinematics within joint limits misses {missed[0]}, {far:.3f} m from '
               f'the first joint, total reach {chain_reach(chain):.3f} m; probe points: '
               f'{PROBES[region["type"]]})', g[region['type']])
    return None, region


def _unreachable_probes(chain, region, start):
    """Return the region's probe points the chain cannot reach (cached: scenarios load often)."""
    key = (chain_signature(chain), repr(sorted(region.items())), start)
    if key not in _REACH_CACHE:
        points = region_probe_points(region)
        _REACH_CACHE[key] = [points[i].tolist() for i in unreachable(chain, points, start)]
    return _REACH_CACHE[key]


def region_probe_points(region):
    """Return the points (N, 3) checked for reachability: a 3x3x3 grid or 26 shell directions."""
    if region['type'] == 'box':
        axes = [np.linspace(lo, hi, 3) for lo, hi in zip(region['low'], region['high'])]
        return np.stack(np.meshgrid(*axes, indexing='ij'), -1).reshape(-1, 3)
    dirs = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing='ij'),
                    -1).reshape(-1, 3)
    dirs = dirs[np.any(dirs != 0, axis=1)]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    return np.concatenate([region['center'] + r * dirs for r in region['radius']])


def chain_signature(chain):
    """Return a hashable value that is equal for chains with the same kinematics."""
    return (chain.types, chain.axes, chain.limits,
            tuple(tuple(link.ravel().tolist()) for link in chain.links))


def chain_reach(chain):
    """Return an upper bound of a chain's tip distance from its first moving joint (m)."""
    lengths = [float(np.linalg.norm(link[:3, 3])) for link in chain.links[1:]]
    extra = sum(max(abs(lo), abs(hi)) for (lo, hi), kind in zip(chain.limits, chain.types)
                if kind == 'prismatic')
    return sum(lengths) + extra


def solve_position(chain, targets, starts, iterations=100, damping=1e-2, tol=1e-4):
    """
    Damped least-squares IK of a Chain for many targets; return (chain q (N, size), error (N,)).

    ``targets`` (N, 3) in the chain's base frame, ``starts`` (N, size) initial joint values
    (chain order); joint limits are respected by clipping. Used at load to check that goal
    regions are reachable, and by the position-mode reference controller.
    """
    q = np.array(starts, dtype=float)                        # (N, size)
    targets = np.asarray(targets, dtype=float)               # (N, 3)
    lo = np.array([lim[0] for lim in chain.limits])
    hi = np.array([lim[1] for lim in chain.limits])
    for _ in range(iterations):
        tip, cols = chain.batch_jacobian(q)                  # (N, 3), (N, size, 3)
        err = targets - tip                                  # (N, 3)
        if np.all(np.linalg.norm(err, axis=1) < tol):
            break
        jac = cols.transpose(0, 2, 1)                                # (N, 3, size)
        jjt = jac @ cols + damping ** 2 * np.eye(3)
        delta = np.linalg.solve(jjt, err[:, :, None])                # (N, 3, 1)
        q = np.clip(q + (cols @ delta)[:, :, 0], lo, hi)
    return q, np.linalg.norm(targets - chain.batch_jacobian(q)[0], axis=1)


def unreachable(chain, points, start, tries=3, tol=1e-3, seed=0):
    """
    Return the indices of ``points`` (N, 3) a Chain's tip cannot reach within ``tol`` (m).

    IK from ``start`` (chain joint values), then from ``tries`` random configurations within
    the joint limits (continuous joints in [-pi, pi]) for the points still missed.
    """
    points = np.asarray(points, dtype=float)
    _, err = solve_position(chain, points, np.tile(start, (len(points), 1)), tol=tol / 10)
    missed = np.flatnonzero(err > tol)
    if missed.size and tries:
        rng = np.random.default_rng(seed)
        lo = np.array([max(lim[0], -math.pi) for lim in chain.limits])
        hi = np.array([min(lim[1], math.pi) for lim in chain.limits])
        starts = rng.uniform(lo, hi, (tries * missed.size, chain.size))
        _, err = solve_position(chain, np.repeat(points[missed], tries, axis=0), starts,
                                tol=tol / 10)
        missed = missed[np.all(err.reshape(missed.size, tries) > tol, axis=1)]
    return missed.tolist()
