"""Scenario loading and validation; the shipped URDFs as XML (tree, limits, inertias)."""

import copy
import json
import math
from pathlib import Path
import shutil
import xml.etree.ElementTree as ElementTree

from maml_robot.observation import observation_layout
from maml_robot.paths import data_path
from maml_robot.scenario import load_scenario, Scenario, ScenarioError, SHIPPED
from maml_robot.sim import urdf_gen
from maml_robot.sim.urdf_gen import cylinder_inertia, sphere_inertia
from maml_robot.urdf import parse_urdf, UrdfError
import numpy as np
import pytest
import yaml

# Tags of the URDF spec (urdfdom); anything else would be a simulator-specific extension.
URDF_TAGS = {'robot', 'link', 'joint', 'inertial', 'origin', 'mass', 'inertia', 'visual',
             'collision', 'geometry', 'box', 'cylinder', 'sphere', 'mesh', 'material', 'color',
             'texture', 'parent', 'child', 'axis', 'limit', 'dynamics', 'calibration',
             'mimic', 'safety_controller'}
EXPECTED_JOINTS = {
    'reacher': ['elbow_joint', 'shoulder_joint'],
    'cheetah': ['bfoot_joint', 'bshin_joint', 'bthigh_joint', 'ffoot_joint', 'fshin_joint',
                'fthigh_joint'],
    'quadruped': [f'{leg}_{part}_joint' for leg in ('back_left', 'back_right', 'front_left',
                                                    'front_right') for part in ('hip', 'knee')],
    'a1_walk': [f'{leg}_{part}_joint' for leg in ('FL', 'FR', 'RL', 'RR')
                for part in ('hip', 'lower', 'upper')],
    'kuka_reach': [f'lbr_iiwa_joint_{i}' for i in range(1, 8)],
}
# Robots whose URDF we write (maml_robot/sim/urdf_gen.py); the others come from pybullet_data.
GENERATED = ('reacher', 'cheetah', 'quadruped')


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_scenarios_load(name):
    sc = load_scenario(name)
    assert list(sc.joint_names) == EXPECTED_JOINTS[name]
    assert list(sc.joint_names) == sorted(sc.joint_names)
    model = parse_urdf(sc.urdf_path)
    assert np.allclose(sc.effort_limits, [model.joints[n].effort for n in sc.joint_names])
    assert sc.act_dim == len(sc.joint_names)
    assert len(observation_layout(sc)) == sc.obs_dim
    assert sc.control_period == pytest.approx(1 / sc.control_rate_hz)
    assert sc.splits['test'].size >= 40 and sc.splits['ood'].size >= 40
    assert not sc.splits['train'].fixed
    # JSON round trip (what checkpoints store).
    again = Scenario.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert again.joint_names == sc.joint_names and again.obs_dim == sc.obs_dim
    assert np.array_equal(again.effort_limits, sc.effort_limits)


def test_episode_lengths_are_short():
    assert 50 <= load_scenario('reacher').episode_steps <= 100
    assert 20 <= load_scenario('reacher').control_rate_hz <= 50
    for name in ('cheetah', 'quadruped'):
        assert load_scenario(name).episode_steps == 200


@pytest.mark.parametrize('name', GENERATED)
def test_urdf_is_a_valid_tree_with_limits_and_inertias(name):
    path = data_path('urdf', f'{name}.urdf')
    root = ElementTree.parse(path).getroot()
    tags = {el.tag for el in root.iter()}
    assert tags <= URDF_TAGS, f'non-URDF tags {tags - URDF_TAGS}'
    links = {el.get('name'): el for el in root.findall('link')}
    children, parents = [], []
    for j in root.findall('joint'):
        assert j.find('parent') is not None and j.find('child') is not None
        assert j.find('origin') is not None, j.get('name')
        children.append(j.find('child').get('link'))
        parents.append(j.find('parent').get('link'))
        if j.get('type') in ('revolute', 'prismatic', 'continuous'):
            lim = j.find('limit')
            assert lim is not None and float(lim.get('velocity')) > 0
            if j.get('type') == 'revolute':
                assert float(lim.get('lower')) < float(lim.get('upper'))
    assert len(children) == len(set(children))
    roots = set(links) - set(children)
    assert len(roots) == 1
    assert set(parents) | set(children) <= set(links)
    model = parse_urdf(path)
    for jn in load_scenario(name).joint_names:
        assert model.joints[jn].effort > 0
    for lname, el in links.items():
        geometry = el.find('visual/geometry')
        inertial = el.find('inertial')
        if geometry is None:
            continue
        assert inertial is not None, f'massive link {lname} without <inertial>'
        mass = float(inertial.find('mass').get('value'))
        inertia = inertial.find('inertia')
        ixx, iyy, izz = (float(inertia.get(k)) for k in ('ixx', 'iyy', 'izz'))
        assert mass > 0 and min(ixx, iyy, izz) > 0
        assert ixx + iyy >= izz and iyy + izz >= ixx and ixx + izz >= iyy  # physical
        shape = geometry[0]
        if shape.tag == 'cylinder':
            want = cylinder_inertia(mass, float(shape.get('radius')), float(shape.get('length')))
        else:
            want = sphere_inertia(mass, float(shape.get('radius')))
        assert np.allclose((ixx, iyy, izz), want, rtol=1e-4), lname
        # The inertia frame is the geometry's frame.
        assert inertial.find('origin').attrib == el.find('visual/origin').attrib


def test_cheetah_planar_root_is_passive():
    sc = load_scenario('cheetah')
    model = parse_urdf(sc.urdf_path)
    planar = [n for n in model.joints if n.startswith('planar_')]
    assert sorted(planar) == ['planar_pitch_joint', 'planar_x_joint', 'planar_z_joint']
    assert not set(planar) & set(sc.joint_names)
    assert model.root == 'planar_base'


def test_reacher_kinematics_match_urdf():
    sc = load_scenario('reacher')
    model = parse_urdf(sc.urdf_path)
    kin = sc.kinematics
    assert kin['chain'] == ('shoulder_joint', 'elbow_joint')
    elbow, tip = model.joints['elbow_joint'], model.joints['fingertip_joint']
    assert kin['link_lengths'][0] == pytest.approx(math.hypot(*elbow.xyz))
    assert kin['link_lengths'][1] == pytest.approx(math.hypot(*tip.xyz))
    assert tip.child == kin['tip_link']
    shoulder_z = sum(j.xyz[2] for j in model.joints.values() if j.name in
                     ('base_mount_joint', 'shoulder_joint'))
    assert kin['origin'][2] == pytest.approx(shoulder_z)
    for name in kin['chain']:
        assert model.joints[name].axis == (0, 0, 1)  # horizontal plane


def test_unknown_scenario_name():
    with pytest.raises(FileNotFoundError, match='neither a shipped scenario'):
        load_scenario('no_such_robot')


def _write(tmp_path, data, name='bad.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope='module')
def reacher_data():
    data = yaml.safe_load(data_path('sim', 'reacher.yaml').read_text())
    data['urdf'] = str(data_path('urdf', 'reacher.urdf'))
    return data


def _set(data, dotted, value):
    keys = dotted.split('.')
    node = data
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


_DELETE = object()
TRAIN = 'dynamics.splits.train.ranges'
MALFORMED = [
    # (dotted key to change, new value, key named in the error)
    ('joints', _DELETE, 'joints'),
    ('joints', ['wrist_joint', 'elbow_joint'], 'joints[0]'),
    ('joints', ['elbow_joint', 'fingertip_joint'], 'joints[1]'),
    ('joints', [], 'joints'),
    ('episode_steps', 0, 'episode_steps'),
    ('episode_steps', 'fifty', 'episode_steps'),
    (f'{TRAIN}.mass_scale', [1.3, 0.7], f'{TRAIN}.mass_scale'),
    (f'{TRAIN}.mass_scale', 2.0, f'{TRAIN}.mass_scale'),
    (f'{TRAIN}.mass_scale', [-1.0, 1.0], f'{TRAIN}.mass_scale[0]'),
    (f'{TRAIN}.payload', [0.0, 'heavy'], f'{TRAIN}.payload[1]'),
    (f'{TRAIN}.motor_reversed', 1.5, f'{TRAIN}.motor_reversed'),
    (f'{TRAIN}.latency_steps', [2, 1], f'{TRAIN}.latency_steps'),
    (f'{TRAIN}.latency_steps', [0, 0.5], f'{TRAIN}.latency_steps[1]'),
    (f'{TRAIN}.wobble', [0, 1], f'{TRAIN}.wobble'),
    (f'{TRAIN}.dead_joint', {'joints': ['knee_joint'], 'probability': 0.5},
     f'{TRAIN}.dead_joint.joints[0]'),
    (f'{TRAIN}.dead_joint', {'joints': ['elbow_joint']}, f'{TRAIN}.dead_joint.probability'),
    ('observation', ['joint_velocity', 'joint_torque'], 'observation[1]'),
    ('observation', 'joint_velocity', 'observation'),
    ('reward', {'goal_distance': 1.0, 'speed': 1.0}, 'reward.speed'),
    ('reward', {'control': 'high'}, 'reward.control'),
    ('dynamics.splits.test.size', 0, 'dynamics.splits.test.size'),
    ('dynamics.splits.test.size', 2.5, 'dynamics.splits.test.size'),
    ('dynamics.splits.test.size', 'forty', 'dynamics.splits.test.size'),
    ('dynamics.splits.test.seed', _DELETE, 'dynamics.splits.test'),
    ('dynamics.splits.test.ranges', 'nope', 'dynamics.splits.test.ranges'),
    ('dynamics.splits.ood', _DELETE, 'dynamics.splits.ood'),
    ('dynamics.splits.train.size', 10, 'dynamics.splits.train'),
    ('dynamics.payload_link', 'hand', 'dynamics.payload_link'),
    ('control.rate_hz', 30, 'control.rate_hz'),
    ('control.mode', 'speed', 'control.mode'),
    ('control.mode', 'position', 'control.action_scale'),
    ('control.kp', 20.0, 'control.kp'),
    ('control.action_scale', {'elbow_joint': 5.0}, 'control.action_scale'),
    ('sim.frame_skip', 0, 'sim.frame_skip'),
    ('sim.timestep', -0.01, 'sim.timestep'),
    ('sim.ground', 'yes', 'sim.ground'),
    ('base.link', 'table', 'base.link'),
    ('urdf', 'missing.urdf', 'urdf'),
    ('goal.radius', [0.05, 0.5], 'goal.radius'),
    ('goal', _DELETE, 'goal'),
    ('kinematics.chain', ['shoulder_joint', 'wrist_joint'], 'kinematics.chain[1]'),
    ('kinematics.link_lengths', [0.1], 'kinematics.link_lengths'),
    ('kinematics.tip_link', 'hand', 'kinematics.tip_link'),
    ('kinematics.link_lengths', [0.1, 0.2], 'kinematics.link_lengths[1]'),
    ('kinematics.type', 'dh', 'kinematics.type'),
    ('initial_state.joint_position', {'wrist_joint': 0.1}, 'initial_state.joint_position.'
     'wrist_joint'),
    ('episode_step', 50, 'episode_step'),
]


MALFORMED_IDS = [f'{m[0]}-{i}' for i, m in enumerate(MALFORMED)]


@pytest.mark.parametrize('dotted,value,key', MALFORMED, ids=MALFORMED_IDS)
def test_malformed_scenarios_name_file_and_key(tmp_path, reacher_data, dotted, value, key):
    data = copy.deepcopy(reacher_data)
    _set(data, dotted, value)
    path = _write(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    err = info.value
    assert isinstance(err, ValueError)
    assert err.key == key, str(err)
    assert str(path) in str(err) and 'expected' in str(err)


def test_malformed_files(tmp_path):
    path = tmp_path / 'list.yaml'
    path.write_text('- just\n- a list\n')
    with pytest.raises(ScenarioError, match='top level'):
        load_scenario(str(path))
    path = tmp_path / 'broken.yaml'
    path.write_text('name: [unclosed\n')
    with pytest.raises(ScenarioError, match='valid YAML'):
        load_scenario(str(path))
    path = tmp_path / 'bad_urdf.yaml'
    (tmp_path / 'bad.urdf').write_text('<robot name="x"><link name="a"/><link name="b"/></robot>')
    data = yaml.safe_load(data_path('sim', 'reacher.yaml').read_text())
    data['urdf'] = 'bad.urdf'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match='exactly one root link'):
        load_scenario(str(path))


def test_user_scenario_with_own_urdf(tmp_path):
    """A user's YAML finds a URDF next to it before the package's copy."""
    urdf = data_path('urdf', 'reacher.urdf').read_text().replace('effort="0.1"', 'effort="0.3"')
    (tmp_path / 'robots').mkdir()
    (tmp_path / 'robots' / 'my_arm.urdf').write_text(urdf)
    data = yaml.safe_load(data_path('sim', 'reacher.yaml').read_text())
    data['urdf'] = 'robots/my_arm.urdf'
    data['name'] = 'my_arm'
    path = _write(tmp_path, data, 'my_arm.yaml')
    sc = load_scenario(str(path))
    assert sc.name == 'my_arm'
    assert sc.urdf_path == (tmp_path / 'robots' / 'my_arm.urdf').resolve()
    assert np.allclose(sc.effort_limits, [0.3, 0.3])
    # A bare file name falls back to the package's urdf/.
    shutil.copy(path, tmp_path / 'other.yaml')
    data['urdf'] = 'reacher.urdf'
    sc2 = load_scenario(str(_write(tmp_path, data, 'other.yaml')))
    assert sc2.urdf_path == Path(data_path('urdf', 'reacher.urdf')).resolve()


def test_shipped_urdfs_match_their_generator(tmp_path):
    assert urdf_gen.main([str(tmp_path)]) == 0
    assert set(SHIPPED) - set(GENERATED) == {'kuka_reach', 'a1_walk'}   # from pybullet_data
    for name in GENERATED:
        assert (tmp_path / f'{name}.urdf').read_text() == \
            data_path('urdf', f'{name}.urdf').read_text(), f'regenerate urdf/{name}.urdf'


URDF_ERRORS = [
    ('<robot name="r"><link name="a"/><link name="a"/></robot>', 'defined twice'),
    ('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="revolute">'
     '<parent link="a"/><child link="b"/></joint></robot>', 'needs a <limit>'),
    ('<robot name="r"><link name="a"/><joint name="j" type="fixed"><parent link="a"/>'
     '<child link="c"/></joint></robot>', 'unknown link'),
    ('<robot name="r"><link name="a"/><link name="b"/><link name="c"/>'
     '<joint name="j1" type="fixed"><parent link="a"/><child link="c"/></joint>'
     '<joint name="j2" type="fixed"><parent link="b"/><child link="c"/></joint></robot>',
     'two parent joints'),
    ('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="hinge">'
     '<parent link="a"/><child link="b"/></joint></robot>', 'type in'),
    ('<robot name="r"><link name="a"/><link name="b"/><joint name="j" type="fixed">'
     '<parent link="a"/><child link="b"/><origin xyz="0 0"/></joint></robot>', '3 numbers'),
    ('<model/>', 'must be <robot>'),
    ('<robot', 'not well-formed'),
]


@pytest.mark.parametrize('text,message', URDF_ERRORS)
def test_urdf_errors(tmp_path, text, message):
    path = tmp_path / 'r.urdf'
    path.write_text(text)
    with pytest.raises(UrdfError, match=message):
        parse_urdf(path)
