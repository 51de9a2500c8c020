"""sim_node: a PyBullet robot (maml_robot.sim.world.World) behind ROS topics, in sim time."""

import sys
import threading
import time

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from maml_robot.dynamics import sample_tasks, Task
from maml_robot.observation import compute_reward, is_terminated
from maml_robot.online.diagnostics import RepeatGate
from maml_robot.ros import conversions
from maml_robot.ros.params import declare_all, Param, read_all
from maml_robot.ros.spin import run_node
from maml_robot.scenario import load_scenario
from maml_robot.sim.world import World
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.validate_topic_name import validate_topic_name
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger
import yaml

PARAMETERS = (
    Param('scenario', 'reacher', 'shipped scenario name or path to a scenario YAML'),
    Param('task_split', 'test', 'split to take the dynamics from (nominal: no change)',
          choices=('nominal', 'train', 'test', 'ood')),
    Param('task_index', 0, 'index of the task in the split', 0, 100000),
    Param('task', '', 'explicit dynamics as a JSON/YAML mapping of Task fields (overrides '
          'task_split), e.g. {payload: 0.1, motor_direction: [1, -1]}'),
    Param('seed', 0, 'seed of initial poses, goals and sensor noise', 0, 2 ** 31 - 1),
    Param('real_time_factor', 1.0, 'sim seconds per wall second', 0.01, 1000.0),
    Param('command_topic', '/forward_effort_controller/commands',
          'std_msgs/Float64MultiArray efforts (torque mode), position targets (position '
          'mode) or velocities (velocity mode) in scenario joint order'),
    Param('command_timeout', 0.1, 'sim seconds without commands before holding (the '
          "scenario's control.hold: zero effort or gravity compensation in torque mode, the "
          'safe pose in position mode, zero velocity in velocity mode)', 0.0, 60.0),
    Param('episode_steps', 0, 'control steps per episode; 0 = the scenario', 0, 1000000),
    Param('auto_reset', True, 'reset the robot (new goal) after each episode'),
    Param('episode_cycle', 0, 'repeat start poses, goals and sensor noise every N episodes, so '
          'that episodes N apart can be compared pair by pair (0: a fresh draw each episode)',
          0, 100000),
    Param('start_paused', False, 'start paused (call ~/pause false to run)'),
    Param('frame_id', 'world', 'frame of goal and odom'),
    Param('publish_robot_description', True, "publish the scenario's URDF (the file's text) on "
          'robot_description (std_msgs/String, transient local, as robot_state_publisher '
          'does); false when a robot_state_publisher publishes it'),
)


class SimNode(Node):
    """Steps the PyBullet world at control_period / real_time_factor and publishes /clock."""

    def __init__(self, **kwargs):
        """Declare and validate parameters, build the world (ValueError names a bad one)."""
        super().__init__('sim_node', **kwargs)
        declare_all(self, PARAMETERS)
        self.values = values = read_all(self, PARAMETERS)
        validate_topic_name(values['command_topic'])
        self.scenario = load_scenario(values['scenario'])
        self.task = self._task(values)
        self.world = World(self.scenario, task=self.task)
        self.rng = np.random.default_rng(values['seed'])
        self.joint_names = tuple(self.scenario.joint_names)
        self.actuation = self.scenario.actuation   # efforts or position targets, per the mode
        self.period = float(self.scenario.control_period)
        self.episode_steps = values['episode_steps'] or int(self.scenario.episode_steps)
        self.publish_goal = (self.scenario.goal_radius is not None
                             or self.scenario.goal_region is not None)
        kin = self.scenario.kinematics
        # 3-D goals live in the arm's base link frame (planar goals in frame_id, the world)
        self.goal_frame = (kin['base_link'] if kin is not None and kin['type'] == 'urdf'
                           else values['frame_id'])
        self.publish_odom = self.world.true_state().base_position is not None
        self._lock = threading.Lock()
        self._command, self._command_time = None, -np.inf
        self.paused = values['start_paused']
        self.sim_time = 0.0
        self.step_count = 0
        self.episode = 0
        self.rejected_commands = 0
        self._log_gate = RepeatGate(1.0)   # a new rejection at once, a repeat once a second
        self.holding = False
        self._fallen = False         # the last tick ended in a fall: the next one resets

        self.clock_pub = self.create_publisher(Clock, '/clock', 10)
        self.joint_pub = self.create_publisher(JointState, 'joint_states', qos_profile_sensor_data)
        self.reward_pub = self.create_publisher(Float64, 'reward', 10)
        self.episode_pub = self.create_publisher(Empty, 'episode_start', 10)
        self.goal_pub = self.create_publisher(PointStamped, 'goal', 10)
        self.odom_pub = self.create_publisher(Odometry, 'odom', qos_profile_sensor_data)
        self.create_subscription(Float64MultiArray, values['command_topic'], self._on_command, 10)
        if values['publish_robot_description']:
            self._publish_description()
        self.create_service(Trigger, '~/reset', self._srv_reset)
        self.create_service(SetBool, '~/pause', self._srv_pause)
        self._reset_world()
        self.timer = self.create_timer(self.period / values['real_time_factor'], self._tick)
        self.get_logger().info(
            f'{self.scenario.name}: {self.task.describe(self.scenario)}; joints '
            f'{list(self.joint_names)}; {1 / self.period:g} Hz x{values["real_time_factor"]:g}')

    def _publish_description(self):
        """Publish the URDF once, latched: the adapter checks its limits against it."""
        text = self.scenario.urdf_path.read_text()
        self.description_pub = self.create_publisher(String, 'robot_description',
                                                     conversions.ROBOT_DESCRIPTION_QOS)
        self.description_pub.publish(String(data=text))

    def _task(self, values):
        if values['task'].strip():
            try:
                data = yaml.safe_load(values['task'])
            except yaml.YAMLError as err:
                raise ValueError(f'parameter task is not valid JSON/YAML: {err}') from None
            if not isinstance(data, dict):
                raise ValueError(f'parameter task must be a mapping of Task fields, got {data!r}')
            return Task.from_dict(data).check(self.scenario)
        split, index = values['task_split'], values['task_index']
        if split == 'nominal':
            return Task.nominal(self.scenario)
        seed = values['seed'] if split == 'train' else None
        return sample_tasks(self.scenario, index + 1, split, seed=seed)[index]

    # ----------------------------------------------------------------------- commands
    def _on_command(self, msg):
        try:
            effort = conversions.command_efforts(msg, len(self.joint_names))
        except ValueError as err:
            self.rejected_commands += 1
            text = f'rejected command: {err}'
            if self._log_gate.allow(text, time.monotonic()):
                self.get_logger().error(text)
            return
        with self._lock:
            self._command, self._command_time = effort, self.sim_time

    def _current_command(self):
        """Return the joint command to apply: the latest fresh one, else the safe hold."""
        with self._lock:
            command, stamp = self._command, self._command_time
        fresh = command is not None and self.sim_time - stamp <= self.values['command_timeout']
        if not fresh:
            if not self.holding and command is not None:
                what = {'zero': 'zero effort', 'gravity': 'gravity-compensating efforts',
                        'default': 'the default pose',
                        'last': 'the last commanded pose',
                        'stop': 'zero velocity'}[self.actuation.hold]
                self.get_logger().warning(f'commands stopped arriving: holding {what}')
            self.holding = True
            # the robot's own drives hold it: they read its joint encoders (the true positions)
            position = self.world.true_state(lists=True).joint_position
            return self.actuation.hold_command(command, position)
        self.holding = False
        return self.actuation.clip_command(command)

    # ------------------------------------------------------------------------- stepping
    def _stamp(self):
        # round the total first: 8.9999999999 s is (9, 0), never (8, 0) -- a clock that jumps
        # back a second makes every use_sim_time node see stale states
        sec, nanosec = divmod(int(round(self.sim_time * 1e9)), 1000000000)
        return Time(sec=sec, nanosec=nanosec)

    def _tick(self):
        if self.paused:
            return
        if self._fallen:
            self._reset_tick()
            return
        command = self._current_command()
        action = self.actuation.normalized(command)              # (J,) normalized
        before = self.world.true_state()
        self.world.apply_action(action)
        self.world.step()
        self.sim_time += self.period
        self.step_count += 1
        # the clock first: a use_sim_time node then reads this tick's time with its state
        self._publish_clock()
        after = self.world.true_state()
        reward = compute_reward(self.scenario, before, action, after)
        self.reward_pub.publish(Float64(data=float(reward)))
        # an episode ends as in training: after episode_steps, or at once on a fall; the
        # fallen state is published (the adapter ends its episode on it, as training does)
        # and the reset takes the next tick
        self._fallen = self.values['auto_reset'] and is_terminated(self.scenario, after)
        if self.values['auto_reset'] and self.step_count >= self.episode_steps \
                and not self._fallen:
            self._end_episode('time limit')
            self._reset_world()      # the next episode's first state is this tick's state
        else:
            self._publish_state()
            if self._fallen:     # announced now, a tick before the new episode's first state
                self._end_episode('fell')
                self.episode_pub.publish(Empty())

    def _reset_tick(self):
        """Reset the fallen robot in a tick of its own: no physics step, reward 0, new state."""
        self._fallen = False
        self.sim_time += self.period
        self._publish_clock()
        self.reward_pub.publish(Float64(data=0.0))
        self._reset_world(announce=False)

    def _end_episode(self, why):
        self.get_logger().info(f'episode {self.episode} ended after {self.step_count} steps '
                               f'({why})')

    def _publish_clock(self):
        clock = Clock()
        clock.clock = self._stamp()
        self.clock_pub.publish(clock)

    def _publish_state(self):
        """Publish one step's state: goal and odom first, joint_states last (see docs/ROS.md)."""
        stamp = self._stamp()
        measured = self.world.measured_state()
        frame = self.values['frame_id']
        if self.publish_goal:
            self.goal_pub.publish(conversions.point_msg(measured.goal, self.goal_frame, stamp))
        if self.publish_odom:
            self.odom_pub.publish(conversions.odometry_msg(measured, frame, 'base_link', stamp))
        self.joint_pub.publish(conversions.joint_state_msg(
            self.joint_names, measured.joint_position, measured.joint_velocity,
            self.world.applied_effort, stamp))

    def _episode_rng(self):
        """Return the generator of the next episode: shared by the run, or one per cycle slot."""
        cycle = self.values['episode_cycle']
        if not cycle:
            return self.rng
        return np.random.default_rng([self.values['seed'], self.episode % cycle])

    def _reset_world(self, announce=True):
        self.world.reset(self._episode_rng())
        self.step_count = 0
        self.episode += 1
        if announce:
            self.episode_pub.publish(Empty())
        self._publish_state()

    # ------------------------------------------------------------------------- services
    def _srv_reset(self, request, response):
        self._reset_world()
        response.success, response.message = True, f'episode {self.episode} started'
        return response

    def _srv_pause(self, request, response):
        self.paused = bool(request.data)
        response.success, response.message = True, 'paused' if self.paused else 'running'
        self.get_logger().info(response.message)
        return response

    def destroy_node(self):
        """Close the PyBullet client with the node."""
        self.world.close()
        return super().destroy_node()


def main(args=None):
    """Run the sim node until shutdown."""
    return run_node('sim_node', SimNode, args)


if __name__ == '__main__':
    sys.exit(main())
