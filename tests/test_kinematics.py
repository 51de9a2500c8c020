"""URDF forward kinematics against PyBullet, chain validation, and 3-D reaching (kuka_reach)."""

import copy
import math

from maml_robot.dynamics import Task
from maml_robot.envs import MetaRobotEnv
from maml_robot.envs.controllers import make_controller
from maml_robot.kinematics import Chain, KinematicsError, Tree
from maml_robot.observation import (build_observation, compute_reward, fingertip_position,
                                    observation_layout, RobotState)
from maml_robot.online import fresh_checkpoint, spec_from_checkpoint
from maml_robot.paths import data_path
from maml_robot.scenario import load_scenario, ScenarioError
from maml_robot.sim.world import World
from maml_robot.urdf import parse_urdf
import numpy as np
import pybullet
import pybullet_data
import pytest
import yaml

A1_FEET = ('FR_toe', 'FL_toe', 'RR_toe', 'RL_toe')


def _joint_indices(cid, body):
    """Return {joint name: index} and {link name: index} of a PyBullet body."""
    joints, links = {}, {}
    for i in range(pybullet.getNumJoints(body, physicsClientId=cid)):
        info = pybullet.getJointInfo(body, i, physicsClientId=cid)
        joints[info[1].decode()], links[info[12].decode()] = i, i
    return joints, links


def _in_base_frame(cid, body, link):
    """Return a link's URDF frame (position (3,), rotation (3, 3)) in the base's URDF frame."""
    # PyBullet's base pose is its inertial frame: undo the URDF <inertial> origin
    com_pos, com_orn = pybullet.getBasePositionAndOrientation(body, physicsClientId=cid)
    inertial_pos, inertial_orn = pybullet.getDynamicsInfo(body, -1, physicsClientId=cid)[3:5]
    base = pybullet.multiplyTransforms(com_pos, com_orn,
                                       *pybullet.invertTransform(inertial_pos, inertial_orn))
    state = pybullet.getLinkState(body, link, computeForwardKinematics=1, physicsClientId=cid)
    pos, orn = pybullet.multiplyTransforms(*pybullet.invertTransform(*base), state[4], state[5])
    return np.array(pos), np.reshape(pybullet.getMatrixFromQuaternion(orn), (3, 3))


def _random_q(rng, model, names):
    return np.array([rng.uniform(model.joints[n].lower, model.joints[n].upper) for n in names])


@pytest.fixture(scope='module')
def kuka():
    world = World('kuka_reach')
    yield world
    world.close()


def test_kuka_tip_matches_pybullet_link_frame(kuka):
    """FK of the flange equals PyBullet's URDF link frame (not the COM) on 100 configurations."""
    sc, cid, body = kuka.scenario, kuka.client_id, kuka.body_id
    chain = sc.kinematics['chain']
    assert chain.joint_names == tuple(f'lbr_iiwa_joint_{i}' for i in range(1, 8))
    model = parse_urdf(sc.urdf_path)
    joints, links = _joint_indices(cid, body)
    rng = np.random.default_rng(0)
    worst = worst_rot = 0.0
    for _ in range(100):
        q = _random_q(rng, model, sc.joint_names)   # scenario order
        for name, value in zip(sc.joint_names, q):
            pybullet.resetJointState(body, joints[name], value, 0.0, physicsClientId=cid)
        pos, rot = _in_base_frame(cid, body, links['lbr_iiwa_link_7'])
        worst = max(worst, np.abs(fingertip_position(sc, q) - pos).max(),
                    np.abs(chain.fk(q) - pos).max())
        worst_rot = max(worst_rot, np.abs(chain.transform(q)[:3, :3] - rot).max())
        assert np.allclose(chain.transform(q)[:3, 3], chain.fk(q), atol=1e-12)
        assert np.allclose(chain.batch_fk(q[None, list(chain.joint_index)])[0], chain.fk(q),
                           atol=1e-12)
    assert worst < 1e-5 and worst_rot < 1e-5, (worst, worst_rot)


def test_a1_feet_match_pybullet_in_the_trunk_frame():
    """Every foot of the floating-base Unitree A1, in the trunk frame, at random base poses."""
    path = pybullet_data.getDataPath() + '/a1/a1.urdf'
    model = parse_urdf(path)
    names = sorted(model.moving_joints)
    chains = {foot: Chain.from_urdf(model, 'trunk', foot, names) for foot in A1_FEET}
    assert {len(c.joint_names) for c in chains.values()} == {3}
    cid = pybullet.connect(pybullet.DIRECT)
    try:
        body = pybullet.loadURDF(path, [0, 0, 0.5], flags=pybullet.URDF_USE_INERTIA_FROM_FILE,
                                 physicsClientId=cid)
        joints, links = _joint_indices(cid, body)
        rng = np.random.default_rng(1)
        worst = 0.0
        for _ in range(100):
            quat = rng.standard_normal(4)
            pybullet.resetBasePositionAndOrientation(
                body, rng.uniform(-1, 1, 3).tolist(), (quat / np.linalg.norm(quat)).tolist(),
                physicsClientId=cid)
            q = _random_q(rng, model, names)
            for name, value in zip(names, q):
                pybullet.resetJointState(body, joints[name], value, 0.0, physicsClientId=cid)
            for foot, chain in chains.items():
                pos, _ = _in_base_frame(cid, body, links[foot])
                worst = max(worst, np.abs(chain.fk(q) - pos).max())
        assert worst < 1e-5, worst
    finally:
        pybullet.disconnect(physicsClientId=cid)


def test_prismatic_and_continuous_joints_match_pybullet():
    """The cheetah's planar root (prismatic x, z, continuous pitch) down to both feet."""
    path = data_path('urdf', 'cheetah.urdf')
    model = parse_urdf(path)
    names = sorted(model.moving_joints)
    chains = {foot: Chain.from_urdf(model, 'planar_base', foot, names)
              for foot in ('bfoot', 'ffoot')}
    assert {c.types[:3] for c in chains.values()} == {('prismatic', 'prismatic', 'revolute')}
    cid = pybullet.connect(pybullet.DIRECT)
    try:
        body = pybullet.loadURDF(str(path), useFixedBase=True, physicsClientId=cid)
        joints, links = _joint_indices(cid, body)
        rng = np.random.default_rng(2)
        worst = 0.0
        for _ in range(100):
            q = rng.uniform(-2.0, 2.0, len(names))
            for name, value in zip(names, q):
                pybullet.resetJointState(body, joints[name], value, 0.0, physicsClientId=cid)
            for foot, chain in chains.items():
                worst = max(worst, np.abs(chain.fk(q) - _in_base_frame(cid, body, links[foot])[0])
                            .max())
        assert worst < 1e-5, worst
    finally:
        pybullet.disconnect(physicsClientId=cid)


@pytest.mark.parametrize('path,base', [
    (pybullet_data.getDataPath() + '/franka_panda/panda.urdf', 'panda_link0'),
    (pybullet_data.getDataPath() + '/a1/a1.urdf', 'trunk'),
    (str(data_path('urdf', 'cheetah.urdf')), 'planar_base'),
], ids=['panda', 'a1', 'cheetah'])
def test_a_tree_places_every_joint_as_the_chain_to_it_does(path, base):
    """Tree.batch_frames: every branch at once, each joint's frame equal to its own Chain's."""
    model = parse_urdf(path)
    names = sorted(model.moving_joints)
    tips = sorted(set(model.links) - {j.parent for j in model.joints.values()})     # leaves
    tree = Tree.from_urdf(model, base, tips, names)
    assert sorted(tree.joint_names) == names
    rng = np.random.default_rng(3)
    qs = rng.uniform(-1.0, 1.0, (5, len(names)))
    frames, axes = tree.batch_frames(qs)                       # (5, K, 4, 4), (5, K, 3)
    for k, name in enumerate(tree.joint_names):
        chain = Chain.from_urdf(model, base, model.joints[name].child, names)
        assert tree.parents[k] < k and tree.attached[model.joints[name].child][0] == k
        for n, q in enumerate(qs):
            np.testing.assert_allclose(frames[n, k], chain.transform(q), atol=1e-12)
            np.testing.assert_allclose(axes[n, k], chain.transform(q)[:3, :3] @ chain.axes[-1],
                                       atol=1e-12)
    # a link past fixed joints (a foot, the Panda's hand and grasp target) rides on its joint
    for tip in tips:
        body, frame = tree.attached[tip]
        chain = Chain.from_urdf(model, base, tip, names)
        for n, q in enumerate(qs):
            np.testing.assert_allclose(frames[n, body] @ frame if body >= 0 else frame,
                                       chain.transform(q), atol=1e-12)
    # row k of descendants: joint k and every joint whose chain passes through it
    below = [[name in Chain.from_urdf(model, base, model.joints[other].child, names).joint_names
              for other in tree.joint_names] for name in tree.joint_names]
    np.testing.assert_array_equal(tree.descendants, np.array(below, dtype=float))


def test_chain_errors_name_what_to_change():
    model = parse_urdf(pybullet_data.getDataPath() + '/kuka_iiwa/model.urdf')
    names = sorted(model.moving_joints)
    with pytest.raises(KinematicsError, match="'hand' is not a link") as info:
        Chain.from_urdf(model, 'lbr_iiwa_link_0', 'hand', names)
    assert info.value.field == 'tip_link'
    with pytest.raises(KinematicsError, match='not below base_link') as info:
        Chain.from_urdf(model, 'lbr_iiwa_link_5', 'lbr_iiwa_link_2', names)
    assert info.value.field == 'tip_link'
    with pytest.raises(KinematicsError, match="'lbr_iiwa_joint_3' .* not a controlled joint"):
        Chain.from_urdf(model, 'lbr_iiwa_link_0', 'lbr_iiwa_link_7',
                        [n for n in names if n != 'lbr_iiwa_joint_3'])


def _kuka_data():
    return yaml.safe_load(data_path('sim', 'kuka_reach.yaml').read_text())


def _set(data, dotted, value):
    *head, last = dotted.split('.')
    for k in head:
        data = data[k]
    data[last] = value


KUKA_MALFORMED = [
    ('kinematics.tip_link', 'lbr_iiwa_link_9', 'kinematics.tip_link', 'lbr_iiwa_link_9'),
    ('kinematics.base_link', 'world', 'kinematics.base_link', 'world'),
    # disconnected: the tip is above the base, not below it
    ('kinematics', {'type': 'urdf', 'base_link': 'lbr_iiwa_link_5',
                    'tip_link': 'lbr_iiwa_link_2'}, 'kinematics.tip_link', 'not below'),
    # an uncontrolled joint in the chain
    ('joints', [f'lbr_iiwa_joint_{i}' for i in range(1, 7)], 'kinematics.tip_link',
     'lbr_iiwa_joint_7'),
    ('kinematics.type', 'dh', 'kinematics.type', 'urdf'),
    ('kinematics.origin', [0, 0, 0], 'kinematics.origin', 'unknown key'),
    ('goal', {'radius': [0.1, 0.2]}, 'goal.radius', 'unknown key'),
    ('goal.box', {'low': [0.4, -0.3, 0.2], 'high': [0.7, 0.3, 1.5]}, 'goal.box', 'reach'),
    ('goal.box', {'low': [0.4, -0.3, 0.2], 'high': [0.3, 0.3, 0.7]}, 'goal.box', 'low <= high'),
    ('goal.shell', {'center': [0, 0, 0.36], 'radius': [0.3, 0.5]}, 'goal', 'exactly one'),
    ('observation', ['joint_velocity', 'fingertip_position'], 'observation', 'planar_chain'),
]


@pytest.mark.parametrize('dotted,value,key,text', KUKA_MALFORMED,
                         ids=[f'{m[0]}-{i}' for i, m in enumerate(KUKA_MALFORMED)])
def test_kuka_scenario_errors_name_the_key(tmp_path, dotted, value, key, text):
    data = _kuka_data()
    _set(data, dotted, value)
    data['control'].update(kp=100.0, kd=1.0)    # the same gains for whichever joints remain
    data['initial_state']['joint_position'] = {'lbr_iiwa_joint_2': 0.6}
    data['dynamics']['splits']['ood']['ranges']['dead_joint']['joints'] = ['lbr_iiwa_joint_4']
    path = tmp_path / 'arm.yaml'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert info.value.key == key, str(info.value)
    assert text in str(info.value) and str(path) in str(info.value)


def test_shell_goals_load_and_sample_within_the_shell(tmp_path):
    data = _kuka_data()
    data['goal'] = {'shell': {'center': [0.5, 0.0, 0.4], 'radius': [0.05, 0.15]}}
    path = tmp_path / 'shell.yaml'
    path.write_text(yaml.safe_dump(data))
    world = World(load_scenario(str(path)))
    try:
        for seed in range(20):
            world.reset(np.random.default_rng(seed))
            r = np.linalg.norm(world.true_state().goal - [0.5, 0.0, 0.4])
            assert 0.05 <= r <= 0.15
    finally:
        world.close()


def test_kuka_goals_in_the_box_deterministic_and_settable(kuka):
    region = kuka.scenario.goal_region
    goals = []
    for seed in (0, 0, 1):
        kuka.reset(np.random.default_rng(seed))
        goals.append(kuka.true_state().goal.copy())
        assert np.all(goals[-1] >= region['low']) and np.all(goals[-1] <= region['high'])
        assert kuka.measured_state(lists=True).goal == goals[-1].tolist()
    assert np.array_equal(goals[0], goals[1]) and not np.array_equal(goals[0], goals[2])
    kuka.set_goal([0.5, 0.1, 0.4])
    assert kuka.true_state().goal.tolist() == [0.5, 0.1, 0.4]


def test_kuka_episode_observes_and_rewards_the_3d_tip():
    """A MetaRobotEnv episode: finite 3-D observations, reward -|PyBullet tip - goal| - control."""
    env = MetaRobotEnv('kuka_reach')
    try:
        sc, world = env.unwrapped.scenario, env.unwrapped.world
        layout = observation_layout(sc)
        ee = [layout.index(f'ee.{a}') for a in 'xyz']
        goal_at = [layout.index(f'goal.{a}') for a in 'xyz']
        to_goal = [layout.index(f'goal_minus_ee.{a}') for a in 'xyz']
        tip_link = world.robot.link_index['lbr_iiwa_link_7']
        obs, _ = env.reset(seed=3, options={'task': Task()})   # nominal: measured = true
        rng = np.random.default_rng(3)
        steps = 0
        done = False
        while not done:
            action = rng.uniform(-0.3, 0.3, sc.act_dim)
            obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            steps += 1
            goal = world.true_state().goal
            tip, _ = _in_base_frame(world.client_id, world.body_id, tip_link)
            assert obs.shape == (sc.obs_dim,) == (30,) and np.all(np.isfinite(obs))
            assert np.allclose(obs[ee], tip, atol=1e-5)
            assert np.allclose(obs[goal_at], goal, atol=1e-6)
            assert np.allclose(obs[to_goal], goal - tip, atol=1e-5)
            want = -np.linalg.norm(tip - goal) - sc.reward['control'] * np.sum(action ** 2)
            assert reward == pytest.approx(want, abs=1e-6)
        assert steps == sc.episode_steps
    finally:
        env.close()


def test_goal_distance_is_3d_and_needs_three_numbers():
    sc = load_scenario('kuka_reach')
    q = sc.initial_joint_position
    tip = fingertip_position(sc, q)
    goal = tip + np.array([0.0, 0.0, 0.2])       # straight above: a planar distance would be 0
    state = RobotState(q, np.zeros(7), goal=goal)
    assert compute_reward(sc, state, np.zeros(7), state) == pytest.approx(-0.2)
    obs = build_observation(sc, state)
    assert np.allclose(obs[-3:], [0.0, 0.0, 0.2], atol=1e-6)
    with pytest.raises(ValueError, match='goal with at least 3 numbers, got 2'):
        build_observation(sc, RobotState(q, np.zeros(7), goal=goal[:2]))


def test_online_adapter_needs_the_3d_goal(tmp_path):
    sc = load_scenario('kuka_reach')
    assert 'goal' in spec_from_checkpoint(fresh_checkpoint(sc), sc).needs
    data = _kuka_data()   # the goal observed, not rewarded: the node still subscribes to it
    data['reward'] = {'control': 1.0}
    for terms in (['goal_position_3d'], ['ee_to_goal']):
        data['observation'] = ['joint_velocity'] + terms
        path = tmp_path / 'observe.yaml'
        path.write_text(yaml.safe_dump(data))
        sc = load_scenario(str(path))
        assert 'goal' in spec_from_checkpoint(fresh_checkpoint(sc), sc).needs, terms


def test_planar_chain_is_checked_against_the_urdf(tmp_path):
    base = yaml.safe_load(data_path('sim', 'reacher.yaml').read_text())
    cases = [('tip_link', 'hand', 'kinematics.tip_link'),
             ('tip_link', 'upper_arm', 'kinematics.chain'),
             ('link_lengths', [0.1, 0.12], 'kinematics.link_lengths[1]'),
             ('origin', [0.0, 0.0, 0.05], 'kinematics.origin')]
    for field, value, key in cases:
        data = copy.deepcopy(base)
        data['kinematics'][field] = value
        path = tmp_path / f'{field}.yaml'
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ScenarioError) as info:
            load_scenario(str(path))
        assert info.value.key == key, str(info.value)


def test_fk_is_fast_enough_for_every_control_step():
    """A 7-joint FK costs microseconds (measured ~7-15 us); a generous bound for shared CPUs."""
    import timeit
    chain = load_scenario('kuka_reach').kinematics['chain']
    q = [0.1 * i for i in range(7)]
    per_call = min(timeit.repeat(lambda: chain.fk_list(q), number=2000, repeat=3)) / 2000
    assert per_call < 2e-4, per_call
    assert math.isfinite(sum(chain.fk_list(q)))


def test_no_torque_reference_controller_for_3d_reaching_says_so(tmp_path):
    assert type(make_controller(load_scenario('kuka_reach'))).__name__ == 'PoseController'
    data = _kuka_data()
    data['control'] = {'mode': 'torque', 'rate_hz': 25}
    path = tmp_path / 'torque.yaml'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match='no torque-mode reference controller for 3-D reaching'):
        make_controller(load_scenario(str(path)))
