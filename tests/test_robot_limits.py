"""The robot's own limits (its URDF) against the checkpoint's scenario, without ROS (issue 18)."""

from pathlib import Path
import re

from maml_robot import online
from maml_robot.online.inputs import (check_joint_velocities, PlausibleJoints, velocity_bounds,
                                      VELOCITY_FACTOR)
from maml_robot.online.robot_limits import (robot_limited_spec, robot_model, trained_limits,
                                            urdf_limits)
from maml_robot.paths import data_path
from maml_robot.scenario import load_scenario
import numpy as np
import pybullet_data
import pytest

KUKA_URDF = Path(pybullet_data.getDataPath()) / 'kuka_iiwa' / 'model.urdf'
REACHER_URDF = data_path('urdf', 'reacher.urdf')


def edit(text, joint, attribute, value):
    """Return URDF ``text`` with ``attribute`` of ``joint``'s <limit> (or its name) changed."""
    start = text.index(f'<joint name="{joint}"')
    end = text.index('</joint>', start)
    block = text[start:end]
    if attribute == 'name':
        changed = block.replace(f'name="{joint}"', f'name="{value}"', 1)
    elif attribute == 'type':
        changed = re.sub(r'type="\w+"', f'type="{value}"', block, count=1)
    else:
        changed, n = re.subn(rf'({attribute}=")[^"]*(")', rf'\g<1>{value}\g<2>', block, count=1)
        assert n == 1, (joint, attribute)
    return text[:start] + changed + text[end:]


def spec_for(scenario, text, tolerance=0.01):
    """Return the AdapterSpec of a fresh checkpoint of ``scenario`` on a robot with URDF text."""
    ckpt = online.fresh_checkpoint(scenario, seed=0)
    spec = online.spec_from_checkpoint(ckpt, scenario)
    return robot_limited_spec(spec, scenario, robot_model(text=text, where='robot_description'),
                              'robot_description', tolerance)


@pytest.fixture(scope='module')
def kuka():
    return load_scenario('kuka_reach')


@pytest.fixture(scope='module')
def reacher():
    return load_scenario('reacher')


def test_the_real_kuka_and_reacher_urdfs_agree_with_their_scenarios(kuka, reacher):
    for scenario, path in ((kuka, KUKA_URDF), (reacher, REACHER_URDF)):
        robot = urdf_limits(robot_model(str(path)), scenario.joint_names, str(path))
        trained = trained_limits(scenario)
        np.testing.assert_array_equal(robot.effort, trained.effort)
        np.testing.assert_array_equal(robot.position, trained.position)
        np.testing.assert_array_equal(robot.velocity, trained.velocity)
        spec = spec_for(scenario, path.read_text())
        assert spec.limits_source == 'robot_description'
        np.testing.assert_array_equal(spec.actuation.effort_limit, scenario.effort_limits)
    np.testing.assert_array_equal(trained_limits(kuka).velocity, np.full(7, 10.0))
    assert trained_limits(kuka).effort.tolist() == [300.0] * 7


@pytest.mark.parametrize('name, joint, attribute, value, message', [
    ('reacher', 'elbow_joint', 'effort', '0.05',
     "joint 'elbow_joint' effort limit 0.05 on the robot, 0.1 in training"),
    ('reacher', 'shoulder_joint', 'velocity', '5',
     "joint 'shoulder_joint' velocity limit 5 on the robot, 20 in training"),
    ('kuka_reach', 'lbr_iiwa_joint_2', 'effort', '150',
     "joint 'lbr_iiwa_joint_2' effort limit 150 on the robot, 300 in training"),
    ('kuka_reach', 'lbr_iiwa_joint_6', 'velocity', '3.5',
     "joint 'lbr_iiwa_joint_6' velocity limit 3.5 on the robot, 10 in training"),
    ('kuka_reach', 'lbr_iiwa_joint_4', 'upper', '1.5',
     "joint 'lbr_iiwa_joint_4' upper position limit 1.5 on the robot, 2.0944 in training"),
    ('kuka_reach', 'lbr_iiwa_joint_1', 'type', 'continuous',
     "joint 'lbr_iiwa_joint_1' is continuous on the robot, revolute in training"),
    ('kuka_reach', 'lbr_iiwa_joint_4', 'name', 'iiwa_joint_4',
     "the robot has no moving joint 'lbr_iiwa_joint_4'"),
    ('reacher', 'elbow_joint', 'name', 'elbow',
     "the robot has no moving joint 'elbow_joint'"),
])
def test_a_robot_with_other_limits_or_joints_is_refused_naming_the_joint(
        kuka, reacher, name, joint, attribute, value, message):
    scenario = kuka if name == 'kuka_reach' else reacher
    path = KUKA_URDF if name == 'kuka_reach' else REACHER_URDF
    text = edit(path.read_text(), joint, attribute, value)
    with pytest.raises(ValueError) as err:
        spec_for(scenario, text)
    assert message in str(err.value)
    assert 'robot_description' in str(err.value)


def test_every_difference_is_named_at_once(reacher):
    text = edit(REACHER_URDF.read_text(), 'elbow_joint', 'effort', '0.05')
    text = edit(text, 'shoulder_joint', 'lower', '-1.0')
    with pytest.raises(ValueError, match=r"'elbow_joint' effort limit 0\.05.*'shoulder_joint' "
                                         r'lower position limit -1 on the robot, -3\.14159'):
        spec_for(reacher, text)


def test_within_the_tolerance_commands_are_clamped_to_the_tighter_limits(reacher, kuka):
    text = edit(REACHER_URDF.read_text(), 'elbow_joint', 'effort', '0.0995')   # 0.5 % lower
    spec = spec_for(reacher, text)
    np.testing.assert_array_equal(spec.actuation.effort_limit, [0.0995, 0.1])
    np.testing.assert_array_equal(spec.actuation.command([1.0, -1.0]), [0.0995, -0.1])
    np.testing.assert_array_equal(spec.actuation.action_scale, [0.1, 0.1])   # policy unchanged
    with pytest.raises(ValueError, match='effort limit 0.0995'):
        spec_for(reacher, text, tolerance=0.001)
    # a position-mode robot: targets stay inside its (slightly tighter) joint range
    upper = 2.09439510239 * 0.995
    text = edit(KUKA_URDF.read_text(), 'lbr_iiwa_joint_4', 'upper', str(upper))
    spec = spec_for(kuka, text)
    j = spec.joint_names.index('lbr_iiwa_joint_4')
    assert spec.position_limits[j, 1] == upper == spec.actuation.position_limits[j, 1]
    target = spec.actuation.clip_command(np.full(7, 10.0))
    assert target[j] == upper


def test_a_description_as_robot_state_publisher_sends_it_is_read():
    """An XML declaration, ros2_control and gazebo tags: the limits are the same."""
    text = REACHER_URDF.read_text().replace('</robot>', (
        '<ros2_control name="arm" type="system"><joint name="elbow_joint">'
        '<command_interface name="effort"/></joint></ros2_control>'
        '<gazebo><static>false</static></gazebo></robot>'))
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + text.split('?>', 1)[-1]
    model = robot_model(text=text, where='/robot_description')
    assert sorted(model.moving_joints) == ['elbow_joint', 'shoulder_joint']
    with pytest.raises(ValueError, match='/robot_description: not well-formed XML'):
        robot_model(text='<robot name="x"><link name="a">', where='/robot_description')
    assert robot_model() is None


def test_without_a_robot_the_trained_urdf_limits_apply(reacher):
    ckpt = online.fresh_checkpoint(reacher, seed=0)
    spec = robot_limited_spec(online.spec_from_checkpoint(ckpt, reacher), reacher)
    assert spec.limits_source == str(reacher.urdf_path)
    np.testing.assert_array_equal(spec.velocity_limits, [20.0, 20.0])


def test_velocities_far_beyond_the_urdf_limit_are_refused(reacher):
    bounds = velocity_bounds([20.0, np.inf])
    assert bounds.tolist() == [VELOCITY_FACTOR * 20.0 + 1.0, 1e4]
    check_joint_velocities([200.0, -9e3], ('a', 'b'), bounds)
    check_joint_velocities([np.nan, 0.0], ('a', 'b'), bounds)   # held as a bad observation
    with pytest.raises(ValueError, match=r"joint 'a' velocity -202 is beyond the plausible "
                                         r'speed 201'):
        check_joint_velocities([-202.0, 0.0], ('a', 'b'), bounds)
    with pytest.raises(ValueError, match=r"joint 'b' velocity 1e\+30"):
        check_joint_velocities([0.0, 1e30], ('a', 'b'), bounds)
    ckpt = online.fresh_checkpoint(reacher, seed=0)
    plausible = PlausibleJoints(robot_limited_spec(online.spec_from_checkpoint(ckpt, reacher),
                                                   reacher))
    plausible.check([0.3, -0.4], [150.0, -150.0])
    with pytest.raises(ValueError, match="joint 'elbow_joint' velocity 1000"):
        plausible.check([0.3, -0.4], [1000.0, 0.0])
