"""adapter_node takes the robot's limits from /robot_description over real DDS (issue 18)."""

import re
import time

from maml_robot.online.robot_limits import robot_model
from maml_robot.paths import data_path
from maml_robot.ros.conversions import ROBOT_DESCRIPTION_QOS
from maml_robot.ros.launcher import node_command, NodeProcesses
from maml_robot.scenario import load_scenario
import numpy as np
import pytest
from ros_domains import domain_id
from std_msgs.msg import String
from test_robot_limits import edit
from test_ros_nodes import adapter_argv, checkpoint, Probe, read_log  # noqa: F401 - fixture

REACHER = data_path('urdf', 'reacher.urdf').read_text()


def publish_description(probe, text):
    """Publish ``text`` on /robot_description as robot_state_publisher does (latched)."""
    pub = probe.node.create_publisher(String, '/robot_description', ROBOT_DESCRIPTION_QOS)
    pub.publish(String(data=text))
    return pub


def test_commands_are_clamped_to_the_published_urdf(checkpoint, tmp_path):  # noqa: F811
    """The description is published BEFORE the node starts; transient local brings it."""
    domain = domain_id()
    probe = Probe(domain)
    # 0.5 % below the reacher's 0.1 N·m: within limit_tolerance, so the robot's limit rules
    text = edit(REACHER, 'elbow_joint', 'effort', '0.0995')
    try:
        publish_description(probe, text)
        time.sleep(0.5)
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            procs.start('adapter', adapter_argv(checkpoint, adapt=True,
                                                robot_description_timeout=20.0))
            probe.wait_commands(5, timeout=40.0)
            commands = np.asarray(probe.stream(2.0))       # (N, 2) elbow, shoulder
            procs.check_alive()
        log = read_log(tmp_path, 'adapter')
        assert 'limits from /robot_description' in log, log
        assert len(commands) > 50
        # exploring actions saturate: the elbow stops at the robot's 0.0995, the shoulder at 0.1
        assert np.max(np.abs(commands[:, 0])) == pytest.approx(0.0995, abs=1e-12)
        assert np.max(np.abs(commands[:, 1])) == pytest.approx(0.1, abs=1e-12)
    finally:
        probe.close()


def test_a_published_urdf_with_other_limits_fails_configure(checkpoint, tmp_path):  # noqa: F811
    domain = domain_id()
    probe = Probe(domain)
    try:
        publish_description(probe, edit(REACHER, 'elbow_joint', 'effort', '0.05'))
        time.sleep(0.5)
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            proc = procs.start('adapter', adapter_argv(checkpoint,
                                                       robot_description_timeout=20.0))
            assert proc.wait(60) == 1
        assert not probe.commands
        log = read_log(tmp_path, 'adapter')
        assert 'configure failed: the robot description (/robot_description) does not match' \
            in log
        assert "joint 'elbow_joint' effort limit 0.05 on the robot, 0.1 in training" in log
    finally:
        probe.close()


@pytest.mark.parametrize('required', [True, False])
def test_without_a_description_the_node_refuses_or_warns(checkpoint, tmp_path,  # noqa: F811
                                                         required):
    domain = domain_id()
    probe = Probe(domain)
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            proc = procs.start('adapter', adapter_argv(
                checkpoint, robot_description_timeout=0.5, require_robot_description=required))
            if required:
                assert proc.wait(60) == 1
            else:
                probe.wait_commands(5, timeout=40.0)
                procs.check_alive()
        log = read_log(tmp_path, 'adapter')
        assert 'nothing arrived on /robot_description within robot_description_timeout 0.5 s' \
            in log
        if required:
            assert 'configure failed' in log and 'require_robot_description false' in log
            assert not probe.commands
        else:
            assert 'clamping to the limits of the URDF the checkpoint was trained with' in log
            assert re.search(r'limits from \S*/reacher\.urdf', log)
    finally:
        probe.close()


def received_descriptions(probe):
    """Subscribe to /robot_description as the adapter does; return the list texts go to."""
    texts = []
    probe.node.create_subscription(String, '/robot_description',
                                   lambda msg: texts.append(msg.data), ROBOT_DESCRIPTION_QOS)
    return texts


def wait_for(predicate, procs, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        procs.check_alive()
        assert time.monotonic() < deadline, f'not within {timeout} s'
        time.sleep(0.1)


def test_the_sim_publishes_its_urdf_and_the_adapter_takes_its_limits(
        checkpoint, tmp_path):  # noqa: F811
    """sim_node + adapter_node as `maml-robot demo|launch` start them: no fallback warning."""
    domain = domain_id()
    probe = Probe(domain)
    texts = received_descriptions(probe)
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            procs.start('sim', node_command('sim_node', overrides={'start_paused': True}))
            procs.start('adapter', adapter_argv(checkpoint, robot_description_timeout=30.0))
            wait_for(lambda: 'active: publishing' in read_log(tmp_path, 'adapter'), procs)
            wait_for(lambda: texts, procs)
        log = read_log(tmp_path, 'adapter')
        assert 'limits from /robot_description' in log, log
        assert 'no robot description' not in log, log
        # what robot_state_publisher would publish: the URDF file's text, as it is
        assert texts == [load_scenario('reacher').urdf_path.read_text()]
    finally:
        probe.close()


def test_the_sim_publishes_a_pybullet_data_urdf_as_its_file_text(tmp_path):
    """kuka_reach's URDF is pybullet_data://...: its text, mesh paths unresolved, parses."""
    scenario = load_scenario('kuka_reach')
    domain = domain_id()
    probe = Probe(domain)
    texts = received_descriptions(probe)
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            procs.start('sim', node_command('sim_node', overrides={
                'scenario': 'kuka_reach', 'start_paused': True}))
            wait_for(lambda: texts, procs)
    finally:
        probe.close()
    assert texts == [scenario.urdf_path.read_text()]
    model = robot_model(text=texts[0])
    assert set(scenario.joint_names) <= set(model.moving_joints)
