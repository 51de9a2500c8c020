"""Torque mode's gravity hold: URDF gravity torques against PyBullet, a held arm, bad configs."""

import dataclasses
from pathlib import Path

from maml_robot.actuation import Actuation
from maml_robot.gravity import GravityModel
from maml_robot.kinematics import Chain, KinematicsError
from maml_robot.observation import RobotState
import maml_robot.online as online
from maml_robot.scenario import build_scenario, load_scenario, ScenarioError
from maml_robot.sim.world import World
from maml_robot.urdf import parse_urdf, parse_urdf_text
import numpy as np
import pybullet
import pybullet_data
import pytest
import yaml

KUKA_URDF = Path(pybullet_data.getDataPath()) / 'kuka_iiwa' / 'model.urdf'


def _kuka_torque(tmp_path, hold='gravity', **changes):
    """Return kuka_reach's data in torque mode with ``hold``, started at rest (no noise)."""
    data = yaml.safe_load(Path(load_scenario('kuka_reach').path).read_text())
    data['control'] = {'mode': 'torque', 'rate_hz': 25, 'hold': hold}
    data['initial_state']['joint_position_noise'] = 0.0
    data['initial_state']['joint_velocity_noise'] = 0.0
    for key, value in changes.items():
        data[key] = value
    return data


def _inverse_dynamics_gravity(cid, body, names, qs):
    """Return PyBullet's calculateInverseDynamics(q, 0, 0) (N, J) for ``names``, in that order."""
    dofs = [i for i in range(pybullet.getNumJoints(body, physicsClientId=cid))
            if pybullet.getJointInfo(body, i, physicsClientId=cid)[2] != pybullet.JOINT_FIXED]
    by_name = {pybullet.getJointInfo(body, i, physicsClientId=cid)[1].decode(): i for i in dofs}
    out = []
    for q in qs:
        position = {by_name[n]: float(v) for n, v in zip(names, q)}
        # a fixed base: the result has one entry per moving joint (no 6 base DoFs)
        tau = pybullet.calculateInverseDynamics(body, [position.get(i, 0.0) for i in dofs],
                                                [0.0] * len(dofs), [0.0] * len(dofs),
                                                physicsClientId=cid)
        out.append([tau[dofs.index(by_name[n])] for n in names])
    return np.array(out)


def test_kuka_gravity_torques_equal_pybullet_inverse_dynamics():
    model = parse_urdf(KUKA_URDF)
    sc = load_scenario('kuka_reach')
    names = sc.joint_names
    gravity = GravityModel.from_urdf(model, names, (0.0, 0.0, sc.gravity))
    assert gravity.links == tuple(f'lbr_iiwa_link_{i}' for i in range(1, 8))   # not the root
    assert gravity.other_joints == ()
    rng = np.random.default_rng(0)
    qs = rng.uniform(sc.position_limits[:, 0], sc.position_limits[:, 1], (100, len(names)))
    cid = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setGravity(0, 0, sc.gravity, physicsClientId=cid)
        body = pybullet.loadURDF(str(KUKA_URDF), useFixedBase=True,
                                 flags=pybullet.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        want = _inverse_dynamics_gravity(cid, body, names, qs)
    finally:
        pybullet.disconnect(cid)
    got = gravity.batch_torques(qs)
    assert np.abs(want).max() > 30.0      # joint 2 carries the arm: tens of N·m
    # measured: 3e-14 N·m at most
    assert np.abs(got - want).max() < 1e-6 * max(1.0, np.abs(want).max()), \
        np.abs(got - want).max()
    np.testing.assert_allclose(gravity.torques(qs[3]), got[3], atol=1e-12)


def test_a_tree_with_uncontrolled_joints_matches_pybullet():
    """A1 legs bolted down: four branches, and the legs not controlled at their rest pose."""
    path = Path(pybullet_data.getDataPath()) / 'a1' / 'a1.urdf'
    model = parse_urdf(path)
    names = sorted(n for n in model.moving_joints if n[:2] in ('FL', 'RR'))
    gravity = GravityModel.from_urdf(model, names, (0.0, 0.0, -9.81))
    assert len(gravity.other_joints) == 6
    rng = np.random.default_rng(1)
    lo = [model.joints[n].lower for n in names]
    hi = [model.joints[n].upper for n in names]
    qs = rng.uniform(lo, hi, (20, len(names)))
    cid = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setGravity(0, 0, -9.81, physicsClientId=cid)
        body = pybullet.loadURDF(str(path), useFixedBase=True,
                                 flags=pybullet.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        full = np.concatenate([qs, np.tile(gravity.other_position, (len(qs), 1))], axis=1)
        want = _inverse_dynamics_gravity(cid, body, names + list(gravity.other_joints), full)
    finally:
        pybullet.disconnect(cid)
    assert np.abs(want[:, :len(names)]).max() > 0.5
    np.testing.assert_allclose(gravity.batch_torques(qs), want[:, :len(names)], atol=1e-9)


def _hold_drift(scenario, seconds=3.0):
    """Send the hold command every control step from rest; return the largest joint drift."""
    world = World(scenario)
    try:
        world.reset(np.random.default_rng(0))
        act = scenario.actuation
        q0 = world.true_state().joint_position.copy()
        drift = 0.0
        for _ in range(int(round(seconds / scenario.control_period))):
            q = world.true_state().joint_position
            world.apply_action(act.normalized(act.hold_command(position=q)))
            world.step()
            drift = max(drift, float(np.abs(world.true_state().joint_position - q0).max()))
        return drift
    finally:
        world.close()


def test_a_gravity_hold_keeps_a_torque_mode_arm_still_and_zero_effort_lets_it_fall(tmp_path):
    held = build_scenario(_kuka_torque(tmp_path, 'gravity'), tmp_path / 'gravity.yaml')
    limp = build_scenario(_kuka_torque(tmp_path, 'zero'), tmp_path / 'zero.yaml')
    assert held.control_mode == 'torque' and held.actuation.hold == 'gravity'
    q0 = held.initial_joint_position
    torques = held.actuation.hold_command(position=q0)
    assert np.abs(torques).max() > 20.0        # the bent elbow pose needs real effort
    np.testing.assert_array_equal(limp.actuation.hold_command(position=q0), np.zeros(7))
    drift_gravity, drift_zero = _hold_drift(held), _hold_drift(limp)
    # measured over 3 s: gravity hold 4e-15 rad, zero effort 1.49 rad
    assert drift_gravity < 0.02 and drift_zero > 0.5, (drift_gravity, drift_zero)


def test_the_gravity_hold_is_clamped_and_needs_positions(tmp_path):
    act = build_scenario(_kuka_torque(tmp_path), tmp_path / 'k.yaml').actuation
    q = np.array([0.0, 1.2, 0.0, -0.4, 0.0, 0.3, 0.0])
    free = act.gravity.torques(q)
    weak = dataclasses.replace(act, effort_limit=np.full(7, 5.0))
    np.testing.assert_allclose(weak.hold_command(position=q), np.clip(free, -5.0, 5.0))
    assert np.abs(free).max() > 5.0
    # without a known (finite) position there is nothing to compensate: zero effort
    np.testing.assert_array_equal(act.hold_command(), np.zeros(7))
    np.testing.assert_array_equal(act.hold_command(position=[np.nan] * 7), np.zeros(7))
    with pytest.raises(ValueError, match="hold 'gravity' needs the robot's gravity model"):
        Actuation.from_dict(act.to_dict())
    assert Actuation.from_dict(act.to_dict(), gravity=act.gravity).hold == 'gravity'


@pytest.mark.parametrize('change,words', [
    ({'base': {'link': 'lbr_iiwa_link_0', 'fixed': False}}, 'floating base'),
    ({'control': {'mode': 'position', 'rate_hz': 25, 'action_scale': 1.0, 'kp': 100.0,
                  'hold': 'gravity'}}, "['default', 'last'] in position mode"),
])
def test_a_gravity_hold_is_refused_where_it_cannot_hold(tmp_path, change, words):
    data = _kuka_torque(tmp_path)
    data.update(change)
    with pytest.raises(ScenarioError) as info:
        build_scenario(data, tmp_path / 'bad.yaml')
    assert info.value.key == 'control.hold' and words in str(info.value), str(info.value)


def test_the_adapter_holds_against_gravity_where_the_arm_was_last_seen(tmp_path):
    sc = build_scenario(_kuka_torque(tmp_path), tmp_path / 'k.yaml')
    ckpt = online.fresh_checkpoint(sc)
    spec = online.spec_from_checkpoint(ckpt, sc)
    adapter = online.OnlineAdapter(ckpt.make_policy(), ckpt.params, spec,
                                   online.OnlineConfig(synchronous=True, adapt=False,
                                                       ramp_in_steps=2, fade_in_steps=0),
                                   log=lambda msg: None)
    gravity = sc.actuation.gravity
    np.testing.assert_array_equal(adapter.hold_command(), np.zeros(7))   # nothing seen yet
    goal = np.array([0.5, 0.0, 0.5])
    q1 = sc.initial_joint_position
    q2 = q1 + 0.3
    # the ramp-in holds the arm where it is now
    cmd = adapter.act(RobotState(q1, np.zeros(7), goal), 0.0)
    assert cmd.mode == online.MODE_RAMP
    np.testing.assert_allclose(cmd.effort, gravity.torques(q1), atol=1e-9)
    # a state whose goal has not arrived yet: the hold still knows where the joints are
    cmd = adapter.act(None, np.inf, joint_position=q2)
    assert cmd.mode == online.MODE_STALE
    np.testing.assert_allclose(cmd.effort, gravity.torques(q2), atol=1e-9)
    # the stream is cut: the last state known, however old
    cmd = adapter.act(RobotState(q1, np.zeros(7), goal), 5.0)
    assert cmd.mode == online.MODE_STALE
    np.testing.assert_allclose(cmd.effort, gravity.torques(q1), atol=1e-9)
    np.testing.assert_allclose(adapter.hold_command(), gravity.torques(q1), atol=1e-9)
    adapter.set_estop(True)
    cmd = adapter.act(RobotState(q2, np.zeros(7), goal), 0.0)
    assert cmd.mode == online.MODE_ESTOP
    np.testing.assert_allclose(cmd.effort, gravity.torques(q2), atol=1e-9)


def _per_link_torques(model, gravity, qs):
    """Return -sum_l m_l J_l(q)^T g (N, J): one root-to-COM Chain per link (the slow form)."""
    full = np.concatenate([qs, np.tile(gravity.other_position, (len(qs), 1))], axis=1)
    order = gravity.joint_names + gravity.other_joints
    torque = np.zeros_like(full)
    held = []
    for name, link in sorted(model.links.items()):
        if name == model.root or link.mass <= 0.0:
            continue        # the mount carries the root; a massless link weighs nothing
        chain = Chain.from_urdf(model, model.root, name, order, tip_offset=link.com)
        if not chain.size:
            continue        # fixed to the root: no joint carries it
        held.append(name)
        index = list(chain.joint_index)
        _, rows = chain.batch_jacobian(full[:, index])                 # (N, size, 3)
        torque[:, index] -= link.mass * (rows @ gravity.gravity)
    assert tuple(held) == gravity.links
    return torque[:, :qs.shape[1]]


@pytest.mark.parametrize('path,prismatic', [
    # two prismatic fingers on branches below seven revolute joints and a fixed, rotated hand
    (Path(pybullet_data.getDataPath()) / 'franka_panda' / 'panda.urdf',
     ('panda_finger_joint1', 'panda_finger_joint2')),
    # a planar root (prismatic x and z, then pitch) carrying the whole cheetah
    (Path(__file__).resolve().parent.parent / 'urdf' / 'cheetah.urdf',
     ('planar_x_joint', 'planar_z_joint')),
], ids=['panda', 'cheetah'])
def test_prismatic_joints_match_pybullet_in_one_pass(path, prismatic):
    model = parse_urdf(path)
    names = sorted(model.moving_joints)
    assert all(model.joints[n].type == 'prismatic' for n in prismatic)
    gravity = GravityModel.from_urdf(model, names, (0.0, 0.0, -9.81))
    rng = np.random.default_rng(2)
    limits = [(model.joints[n].lower, model.joints[n].upper) for n in names]
    qs = rng.uniform([-np.pi if lo is None else lo for lo, _ in limits],    # continuous: +-pi
                     [np.pi if hi is None else hi for _, hi in limits], (50, len(names)))
    cid = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setGravity(0, 0, -9.81, physicsClientId=cid)
        body = pybullet.loadURDF(str(path), useFixedBase=True,
                                 flags=pybullet.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
        want = _inverse_dynamics_gravity(cid, body, names, qs)
    finally:
        pybullet.disconnect(cid)
    got = gravity.batch_torques(qs)
    columns = [names.index(n) for n in prismatic]
    assert np.abs(want[:, columns]).max() > 0.5        # the prismatic joints carry weight
    np.testing.assert_allclose(got, want, atol=1e-9 * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(got, _per_link_torques(model, gravity, qs), atol=1e-9)
    np.testing.assert_allclose(gravity.torques(qs[5]), got[5], atol=1e-12)


FLOATING_URDF = """<robot name="r"><link name="base"/>
  <link name="arm"><inertial><origin xyz="0.5 0 0"/><mass value="1"/></inertial></link>
  <link name="loose"><inertial><mass value="LOOSE_MASS"/></inertial></link>
  <joint name="shoulder" type="revolute"><parent link="base"/><child link="arm"/>
    <axis xyz="0 1 0"/><limit lower="-1" upper="1"/></joint>
  <joint name="free" type="floating"><parent link="arm"/><child link="loose"/></joint>
</robot>"""


def test_a_floating_joint_above_a_link_with_mass_is_refused():
    model = parse_urdf_text(FLOATING_URDF.replace('LOOSE_MASS', '1'), 'r.urdf')
    with pytest.raises(KinematicsError) as info:
        GravityModel.from_urdf(model, ['shoulder'])
    assert info.value.field == 'tip_link'
    assert str(info.value) == ("joint 'free' between 'base' and 'loose' is floating: only "
                               'revolute, continuous, prismatic and fixed joints can be on a '
                               'chain')
    # above a massless link only: nothing to hold there, the arm's weight is still held
    model = parse_urdf_text(FLOATING_URDF.replace('LOOSE_MASS', '0'), 'r.urdf')
    arm = GravityModel.from_urdf(model, ['shoulder'])
    assert arm.links == ('arm',)
    # 1 kg at 0.5 m along x, turned about y by q: its weight pulls q up; hold it with -m g r cos q
    np.testing.assert_allclose(arm.torques([0.3]), [-9.81 * 0.5 * np.cos(0.3)], atol=1e-12)
