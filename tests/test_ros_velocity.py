"""
Over real DDS: a velocity-mode KUKA (forward_velocity_controller's commands, the stop hold).

The relay and waits are test_ros_position's; the scenario and the constant policy are
test_velocity_mode's. Between the adapter and the sim sits a stand-in for the controller: it
reads each command in its joint order and drives the sim's joints by name.
"""

import time

from maml_robot import online
from maml_robot.checkpoint import save_checkpoint
from maml_robot.gravity import GravityModel
from maml_robot.ros.launcher import node_command, NodeProcesses
from maml_robot.scenario import build_scenario
from maml_robot.urdf import parse_urdf
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from ros_domains import domain_id
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from test_ros_position import _wait, ArmRelay
from test_velocity_mode import constant_policy, KUKA_KV, velocity_data
import yaml

pytestmark = [pytest.mark.ros, pytest.mark.slow]
COMMAND = '/forward_velocity_controller/commands'
"""What the sim reads (scenario joint order)."""
ORDERED = '/ordered/commands'
"""What the adapter publishes (the controller's joint order)."""


def test_velocity_commands_in_the_controllers_order_and_a_zero_velocity_hold(tmp_path):
    data = velocity_data('kuka_reach')
    path = tmp_path / 'kuka_velocity.yaml'
    path.write_text(yaml.safe_dump(data))
    sc = build_scenario(data, path)
    action = np.array([0.1, -0.1, 0.15, 0.1, -0.15, 0.2, 0.25])   # rad/s (action_scale 1)
    checkpoint = tmp_path / 'kuka_velocity.safetensors'
    save_checkpoint(checkpoint, constant_policy(online.fresh_checkpoint(sc, seed=0), action))
    order = list(sc.joint_names[3:] + sc.joint_names[:3])   # the elbow on, then the shoulder
    index = [sc.joint_names.index(n) for n in order]
    domain = domain_id()
    relay = ArmRelay(domain, command=COMMAND)
    ordered, sim_qd, sim_q = [], [], []
    to_sim = relay.node.create_publisher(Float64MultiArray, COMMAND, 10)

    def controller(msg):
        ordered.append(list(msg.data))
        by_name = dict(zip(order, msg.data))
        to_sim.publish(Float64MultiArray(data=[by_name[n] for n in sc.joint_names]))
    relay.node.create_subscription(Float64MultiArray, ORDERED, controller, 10)
    relay.node.create_subscription(JointState, 'sim/joint_states',
                                   lambda m: (sim_qd.append(list(m.velocity)),
                                              sim_q.append(list(m.position))),
                                   qos_profile_sensor_data)
    sim = node_command('sim_node', overrides={
        'scenario': str(path), 'command_topic': COMMAND, 'real_time_factor': 2.0,
        'task_split': 'nominal'}, remaps={'joint_states': 'sim/joint_states', 'goal': 'sim/goal'})
    adapter = node_command('adapter_node', overrides={
        'checkpoint': str(checkpoint), 'command_topic': ORDERED, 'use_sim_time': True,
        'command_joint_order': ','.join(order), 'ramp_in_steps': 0, 'fade_in_steps': 0,
        'state_timeout': 0.1, 'adapt': False})
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            procs.start('sim', sim)
            procs.start('adapter', adapter)
            assert _wait(lambda: len(ordered) >= 60, 60, procs), 'no commands'
            policy = np.array(ordered[-20:])
            moving = np.array(sim_qd[-40:])
            relay.forward = False           # the state stream is cut; the sim keeps running
            time.sleep(0.5)
            cut_at = len(sim_qd)
            time.sleep(2.0)
            procs.check_alive()
            held = np.array(ordered[-20:])
            after = np.array(sim_qd[cut_at:])
            pose = np.array(sim_q[cut_at:len(after) + cut_at])
        # 7 velocities per tick, joint by joint in the controller's order
        np.testing.assert_allclose(policy, np.tile(action[index], (len(policy), 1)), atol=1e-6)
        # the sim's drives track them: the unloaded vertical axes (joints 1, 3) within 0.03
        # rad/s (a loaded joint lags by load / kv: test_velocity_mode)
        lag = np.median(np.abs(moving[:, [0, 2]] - action[[0, 2]]), axis=0)
        assert np.all(lag < 0.03), lag
        # the watchdog's hold: zero velocity, every tick
        np.testing.assert_array_equal(held, np.zeros_like(held))
        # the drives brake: no joint moves faster than its load lets a P loop creep
        # (load / (kv + URDF damping 0.5), test_velocity_mode), and the base joint, whose axis
        # is along gravity, stops. (A fixed bound failed once: joint 3 tilts as the shoulder
        # moves, and its creep then depends on where the arm was when the stream was cut.)
        assert len(after) > 40
        gravity = GravityModel.from_urdf(parse_urdf(sc.urdf_path), sc.joint_names)
        creep = np.abs(gravity.batch_torques(pose)) / (np.array(KUKA_KV) + 0.5)
        assert np.all(np.abs(after) <= 1.3 * creep + 3e-3), np.abs(after) - 1.3 * creep
        assert np.abs(after[:, 0]).max() < 1e-3, after[:, 0]
        assert 'holding: stale_state' in (tmp_path / 'adapter.log').read_text()
    finally:
        relay.close()


def test_a_velocity_checkpoint_with_trajectory_commands_fails_to_configure(tmp_path):
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from maml_robot.ros.adapter_node import AdapterNode
    sc = build_scenario(velocity_data('kuka_reach'), tmp_path / 'kuka_velocity.yaml')
    checkpoint = tmp_path / 'kuka_velocity.safetensors'
    save_checkpoint(checkpoint, online.fresh_checkpoint(sc, seed=0))
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id())
    try:
        node = AdapterNode(context=context, parameter_overrides=[
            Parameter('checkpoint', value=str(checkpoint)),
            Parameter('command_type', value='trajectory')])
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert node.adapter is None
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
