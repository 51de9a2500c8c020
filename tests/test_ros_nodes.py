"""adapter_node and sim_node over real DDS (separate processes, an own ROS_DOMAIN_ID each test)."""

import math
import re
import threading
import time

from geometry_msgs.msg import PointStamped
from maml_robot import online
from maml_robot.checkpoint import load_checkpoint, save_checkpoint
from maml_robot.ros.conversions import EPISODE_RETURN_QOS
from maml_robot.ros.launcher import node_command, NodeProcesses
from maml_robot.scenario import load_scenario
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from ros_domains import domain_id
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
import torch

torch.set_num_threads(1)
JOINTS = ('elbow_joint', 'shoulder_joint')
COMMAND = '/forward_effort_controller/commands'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'fresh.safetensors'
    save_checkpoint(path, online.fresh_checkpoint(load_scenario('reacher'), seed=0))
    return path


class Probe:
    """Plays the robot (joint_states, goal) and records the adapter's commands."""

    def __init__(self, domain):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node('probe', context=self.context)
        self.joints = self.node.create_publisher(JointState, 'joint_states',
                                                 qos_profile_sensor_data)
        self.goal = self.node.create_publisher(PointStamped, 'goal', 10)
        self.commands = []           # (wall time, data)
        self.node.create_subscription(Float64MultiArray, COMMAND, self._on_command, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_command(self, msg):
        self.commands.append((time.monotonic(), list(msg.data)))

    def send(self, names=JOINTS, pos=(0.3, -0.4), vel=(0.1, 0.2), goal=(0.1, 0.1, 0.03)):
        msg = JointState(name=list(names), position=[float(v) for v in pos],
                         velocity=[float(v) for v in vel])
        self.joints.publish(msg)
        g = PointStamped()
        g.point.x, g.point.y, g.point.z = goal
        self.goal.publish(g)

    def stream(self, seconds, **kw):
        """Publish the same state at 100 Hz; return the commands received meanwhile."""
        start = len(self.commands)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.send(**kw)
            time.sleep(0.01)
        return [c for _, c in self.commands[start:]]

    def call(self, service, value, timeout=5.0):
        client = self.node.create_client(SetBool, service)
        assert client.wait_for_service(timeout), f'{service} not available'
        future = client.call_async(SetBool.Request(data=value))
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert future.done() and future.result().success
        self.node.destroy_client(client)

    def wait_commands(self, n=1, timeout=40.0):
        deadline = time.monotonic() + timeout
        while len(self.commands) < n and time.monotonic() < deadline:
            self.send()
            time.sleep(0.01)
        assert len(self.commands) >= n, 'adapter published no commands'

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(2.0)


def adapter_argv(checkpoint, **overrides):
    params = {'checkpoint': str(checkpoint), 'adapt': False, 'ramp_in_steps': 0,
              'fade_in_steps': 0, 'control_rate_hz': 50.0, 'state_timeout': 0.1}
    params.update(overrides)
    return node_command('adapter_node', overrides=params)


def read_log(tmp_path, name):
    return (tmp_path / f'{name}.log').read_text()


def log_time(log, text, after=-math.inf):
    """Return the time stamp of the first line of a node's log with ``text`` after ``after``."""
    for line in log.splitlines():
        match = re.match(r'\[\w+\] \[(\d+\.\d+)\]', line)
        if match and text in line and float(match.group(1)) > after:
            return float(match.group(1))
    raise AssertionError(f'no line with {text!r} after {after} in the log:\n{log}')


@pytest.mark.parametrize('trigger', ['state', 'timer'])
def test_adapter_node_inputs_safety_and_estop(checkpoint, tmp_path, trigger):
    domain = domain_id()
    probe = Probe(domain)
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            procs.start('adapter', adapter_argv(checkpoint, trigger=trigger))
            probe.wait_commands(5)
            # fixed rate: states at 100 Hz, control at 50 Hz -> about 50 commands a second
            # (state mode decimates the stream to the control rate, timer mode ticks at it)
            start = time.monotonic()
            count = len(probe.stream(1.0))
            rate = count / (time.monotonic() - start)
            assert 40 <= rate <= 60, f'{count} commands in 1 s at 50 Hz ({trigger})'
            # joints by NAME: shuffled order and extra joints give the same command
            ordered = probe.stream(0.4)[-1]
            assert np.any(np.abs(ordered) > 0)
            shuffled = probe.stream(0.4, names=('extra', 'shoulder_joint', 'elbow_joint'),
                                    pos=(9.0, -0.4, 0.3), vel=(9.0, 0.2, 0.1))[-1]
            np.testing.assert_allclose(shuffled, ordered, rtol=1e-6)
            # a missing joint, wrong lengths, NaN and inf: hold (zeros), never NaN, clear log
            # (NaN first: bad_observation, then the broken states' stale_state is a new reason)
            cases = [{'pos': (math.nan, 0.1)},
                     {'names': ('elbow_joint',), 'pos': (0.3,), 'vel': (0.1,)},
                     {'pos': (0.3,)},
                     {'vel': (math.inf, 0.0)}]
            for kw in cases:
                cmds = probe.stream(0.3, **kw)
                assert cmds and all(np.all(np.isfinite(c)) for c in cmds)
                assert np.all(np.asarray(cmds[-3:]) == 0.0), kw
            # sensor silence: the hold command comes within state_timeout (+ one period)
            probe.stream(0.3)
            silent_at = time.monotonic()
            time.sleep(0.4)
            zero_at = next(t for t, c in probe.commands if t > silent_at and not any(c))
            assert zero_at - silent_at < 0.1 + 0.02 + 0.08   # timeout + period + DDS slack
            # e-stop latches a zero command until released
            probe.call('/adapter_node/estop', True)
            assert all(not any(c) for c in probe.stream(0.4)[2:])
            probe.call('/adapter_node/estop', False)
            np.testing.assert_allclose(probe.stream(0.4)[-1], ordered, rtol=1e-6)
            procs.check_alive()
        log = read_log(tmp_path, 'adapter')
        assert "joint 'shoulder_joint' missing from joint_states" in log
        assert 'but 1 positions' in log and 'holding: bad_observation' in log
        # a new hold reason is logged at once, not held back by the last one's 1 s throttle
        bad_at = log_time(log, 'holding: bad_observation')
        stale_at = log_time(log, 'holding: stale_state (state age inf', after=bad_at)
        assert stale_at - bad_at < 0.9, (bad_at, stale_at)
        assert "joint 'elbow_joint' velocity inf is beyond the plausible speed 201" in log
        assert 'e-stop engaged' in log
    finally:
        probe.close()


def test_bad_checkpoint_refuses_to_activate(tmp_path):
    bad = tmp_path / 'broken.safetensors'
    bad.write_bytes(b'not a checkpoint at all')
    domain = domain_id()
    probe = Probe(domain)
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            proc = procs.start('adapter', adapter_argv(bad))
            assert proc.wait(30) == 1
        assert not probe.commands
        assert 'configure failed' in read_log(tmp_path, 'adapter')
    finally:
        probe.close()


def test_sim_and_adapter_adapt_online_and_resume(checkpoint, tmp_path):
    """Over ROS topics on an unseen (test split) dynamics: adapt, persist, restart, resume."""
    domain = domain_id()
    persist = tmp_path / 'adapted.safetensors'
    probe = Probe(domain)
    returns, stamps = [], []
    # transient local like the publisher: episodes that ended before discovery still arrive
    probe.node.create_subscription(Float64MultiArray, '/adapter_node/episode_return',
                                   lambda m: returns.append(list(m.data)), EPISODE_RETURN_QOS)
    probe.node.create_subscription(
        JointState, 'joint_states',
        lambda m: stamps.append((m.header.stamp.sec, m.header.stamp.nanosec)),
        qos_profile_sensor_data)
    sim = node_command('sim_node', overrides={'real_time_factor': 6.0, 'task_split': 'test',
                                              'task_index': 3})
    adapter = node_command('adapter_node', overrides={
        'checkpoint': str(checkpoint), 'use_sim_time': True, 'reward_source': 'topic',
        'rollouts_per_step': 1, 'accept_window': 1, 'rollback_margin': 10.0,
        'divergence_margin': 100.0, 'persist_path': str(persist), 'ramp_in_steps': 2,
        'fade_in_steps': 2})
    try:
        with NodeProcesses(domain, log_dir=tmp_path) as procs:
            procs.start('sim', sim)
            procs.start('adapter', adapter)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                    returns and returns[-1][2] >= 2 and persist.exists()):
                time.sleep(0.1)
                procs.check_alive()
            assert returns and returns[-1][2] >= 2, f'no adaptation: {returns}'
            # bad commands to the sim are rejected with a log, and it keeps running
            bad = probe.node.create_publisher(Float64MultiArray, COMMAND, 10)
            for data in ([1.0], [math.nan, 0.0]):
                for _ in range(3):
                    bad.publish(Float64MultiArray(data=data))
                    time.sleep(0.02)
            procs.check_alive()
            procs.stop('adapter')           # clean shutdown persists
            deadline = time.monotonic() + 5     # and the sim holds once commands stop
            while time.monotonic() < deadline and 'commands stopped arriving' not in read_log(
                    tmp_path, 'sim'):
                time.sleep(0.1)
            adapted = load_checkpoint(persist)
            meta = load_checkpoint(checkpoint)
            assert any(not torch.equal(adapted.params[k], meta.params[k]) for k in meta.params)
            assert adapted.training['adaptations'] >= 1
            procs.start('adapter2', adapter)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and 'resuming' not in read_log(
                    tmp_path, 'adapter2'):
                time.sleep(0.1)
            procs.check_alive()
        assert 'resuming' in read_log(tmp_path, 'adapter2')
        sim_log = read_log(tmp_path, 'sim')
        assert 'rejected command: command has 1 values, expected 2' in sim_log
        assert 'non-finite' in sim_log
        assert 'commands stopped arriving: holding zero effort' in sim_log
        assert returns[0][0] == 1, 'episode history (transient local) must reach late joiners'
        rets = [r[1] for r in returns]
        assert all(math.isfinite(r) for r in rets) and len(set(rets)) > 1
        # one joint_states per sim tick, also when an episode ends (the reset state replaces
        # the terminal one), so a state-triggered adapter acts once per step; and sim time
        # never steps back (it once did by 1 s at x.9999999 s): stamps strictly increase
        assert len(stamps) > 100 and all(b > a for a, b in zip(stamps, stamps[1:]))
    finally:
        probe.close()


def test_parameters_are_validated_with_clear_errors(checkpoint):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from maml_robot.ros.adapter_node import AdapterNode
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id())
    try:
        with pytest.raises(ValueError, match="parameter 'state_timeout'.*expected float in"):
            AdapterNode(context=context,
                        parameter_overrides=[Parameter('state_timeout', value=-1.0)])
        with pytest.raises(ValueError, match="parameter 'steps_per_batch'"):
            AdapterNode(context=context, parameter_overrides=[Parameter('steps_per_batch',
                                                                        value='two')])
        node = AdapterNode(context=context, parameter_overrides=[
            Parameter('checkpoint', value=str(checkpoint)),
            Parameter('reward_source', value='camera')])
        assert node.trigger_configure() != TransitionCallbackReturn.SUCCESS
        assert node.adapter is None
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_lifecycle_activate_publishes_and_deactivate_holds(checkpoint):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from maml_robot.ros.adapter_node import AdapterNode
    probe = Probe(domain_id())
    executor = None
    try:
        node = AdapterNode(context=probe.context, parameter_overrides=[
            Parameter('checkpoint', value=str(checkpoint)), Parameter('adapt', value=False),
            Parameter('ramp_in_steps', value=0), Parameter('fade_in_steps', value=0)])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        executor = SingleThreadedExecutor(context=probe.context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        assert any(any(c) for c in probe.stream(1.0)), 'no policy command while active'
        executor.shutdown()
        thread.join(2.0)
        count = len(probe.commands)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        deadline = time.monotonic() + 2.0
        while len(probe.commands) == count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert probe.commands[-1][1] == [0.0, 0.0]
        node.destroy_node()
    finally:
        probe.close()


def test_sim_node_publishes_the_3d_goal_in_the_arm_base_frame():
    """kuka_reach: the goal message carries x, y and z in kinematics.base_link's frame."""
    from rclpy.parameter import Parameter
    from maml_robot.ros.conversions import point_array
    from maml_robot.ros.sim_node import SimNode
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id())
    try:
        node = SimNode(context=context, parameter_overrides=[
            Parameter('scenario', value='kuka_reach'), Parameter('start_paused', value=True)])
        probe = rclpy.create_node('goal_probe', context=context)
        got = []
        probe.create_subscription(PointStamped, 'goal', got.append, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        deadline = time.monotonic() + 5.0
        while not got and time.monotonic() < deadline:
            node._publish_state()
            executor.spin_once(timeout_sec=0.1)
        assert got, 'no goal message'
        goal = node.world.true_state().goal
        region = node.scenario.goal_region
        assert got[-1].header.frame_id == 'lbr_iiwa_link_0'
        # what the adapter node reads into RobotState.goal: all three numbers
        assert point_array(got[-1]).tolist() == goal.tolist()
        assert np.all(goal >= region['low']) and np.all(goal <= region['high'])
        executor.shutdown()
        probe.destroy_node()
        node.world.close()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_sim_node_episode_cycle_repeats_start_pose_and_goal():
    """episode_cycle N: episode k + N starts where episode k did (paired demo); k + 1 does not."""
    from rclpy.parameter import Parameter
    from maml_robot.ros.sim_node import SimNode
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id())
    try:
        node = SimNode(context=context, parameter_overrides=[
            Parameter('episode_cycle', value=3), Parameter('seed', value=7),
            Parameter('start_paused', value=True)])
        starts = []
        for _ in range(7):               # episode 1 was reset in the constructor
            state = node.world.true_state()
            starts.append(np.concatenate([state.joint_position, state.joint_velocity,
                                          state.goal]))
            node._reset_world()
        assert node.episode == 8
        for k in range(4):
            assert np.array_equal(starts[k], starts[k + 3]), k
            assert not np.allclose(starts[k], starts[k + 1]), k
        node.world.close()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
