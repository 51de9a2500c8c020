"""adapter_node: lifecycle node that runs a meta-policy and adapts it online (thin over online)."""

import dataclasses
import math
import re
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from maml_robot.online import (load_adapter, MODE_BAD_ACTION, MODE_BAD_OBS, MODE_STALE,
                               OnlineConfig)
from maml_robot.online.config import command_order
from maml_robot.online.inputs import check_joint_positions, position_bounds
from maml_robot.online.trigger import ACT, DROP, StateTrigger
from maml_robot.ros import conversions
from maml_robot.ros.params import check_value, declare_all, find_param, Param, read_all
from maml_robot.ros.spin import run_node
from nav_msgs.msg import Odometry
import numpy as np
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, Float64, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

PARAMETERS = (
    Param('checkpoint', 'reacher', 'meta-policy: a .safetensors path or a shipped model name'),
    Param('control_rate_hz', 0.0, 'command rate; 0 = the checkpoint control period', 0.0,
          1000.0),
    Param('trigger', 'state', 'state: one command per joint_states message (at most '
          'control_rate_hz), computed on receipt; timer: a command every control period from '
          'the latest state', choices=('state', 'timer')),
    Param('command_topic', '/forward_effort_controller/commands',
          'std_msgs/Float64MultiArray efforts in checkpoint joint order'),
    Param('command_joint_order', '', "the controller's joint order, comma-separated (its "
          "joints parameter); '' = the checkpoint's order (joint names sorted)"),
    Param('command_type', 'array', 'array: std_msgs/Float64MultiArray (forward_command_'
          'controller); trajectory: trajectory_msgs/JointTrajectory, one point a period ahead '
          '(joint_trajectory_controller)', choices=('array', 'trajectory')),
    Param('reward_source', 'internal', 'internal: compute_reward from observed states; '
          'topic: std_msgs/Float64 on reward', choices=('internal', 'topic')),
    Param('adapt', True, 'adapt online from live rewards'),
    Param('inner_steps', 1, 'inner_step calls per update', 1, 100),
    Param('rollouts_per_step', 20, 'live episodes per update', 1, 1000),
    Param('episode_steps', 0, 'control steps per episode; 0 = the checkpoint', 0, 1000000),
    Param('state_timeout', 0.1, 'seconds of joint_states silence before holding', 0.001, 60.0),
    Param('max_param_delta', 1.0, 'largest L2 norm of one parameter update', 1e-6, 1e6),
    Param('rate_limit', 0.0, 'largest normalized action change per step; 0 = off', 0.0, 2.0),
    Param('ramp_in_steps', 10, 'hold steps after start, e-stop release or outage', 0, 100000),
    Param('fade_in_steps', 25, 'steps to blend the policy in after the ramp-in', 0, 100000),
    Param('accept_window', 0, 'episodes to judge an update before accepting it; 0 = '
          'rollouts_per_step', 0, 1000),
    Param('rollback_margin', 0.1, 'relative return drop that rolls an update back', 0.0, 10.0),
    Param('divergence_margin', 0.5, 'relative drop below the meta-policy that reverts to it',
          0.0, 100.0),
    Param('rollback_z', 1.64, 'standard errors a drop must also exceed; 0 = margins only',
          0.0, 10.0),
    Param('reward_limit', 1e6, 'largest plausible |reward| of a step; beyond: episode dropped',
          1e-6, 1e300),
    Param('device', 'cpu', 'torch device of the online policy', choices=('cpu', 'auto')),
    Param('torch_threads', 1, 'torch intra-op threads', 1, 256),
    Param('persist_path', '', 'save accepted adapted parameters here; resume on restart'),
    Param('seed', 0, 'seed of the exploration noise', 0, 2 ** 31 - 1),
    Param('diagnostics_period', 1.0, 'seconds between /diagnostics messages', 0.01, 3600.0),
    Param('autostart', False, 'configure and activate at start-up (no lifecycle manager)'),
)
CONFIG_FIELDS = ('adapt', 'inner_steps', 'rollouts_per_step', 'episode_steps', 'state_timeout',
                 'max_param_delta', 'rate_limit', 'ramp_in_steps', 'fade_in_steps',
                 'accept_window', 'rollback_margin', 'divergence_margin', 'rollback_z',
                 'reward_limit')
# applied at once when set while configured; any other change waits for the next configure
LIVE_FIELDS = ('adapt', 'state_timeout', 'max_param_delta', 'rate_limit', 'rollback_margin',
               'divergence_margin', 'rollback_z', 'reward_limit')


class AdapterNode(LifecycleNode):
    """Lifecycle node: configure loads the checkpoint, activate starts the control timer."""

    def __init__(self, **kwargs):
        """Declare the parameters (a bad value raises ValueError naming it)."""
        super().__init__('adapter_node', **kwargs)
        declare_all(self, PARAMETERS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.adapter = None
        self._order = None           # command_joint_order as indices (None: checkpoint order)
        self._timer = None
        self._entities = []
        self._lock = threading.Lock()
        self._reset_inputs()

    def _reset_inputs(self):
        self._joints = None          # (position, velocity) in checkpoint order
        self._joints_time = None     # node-clock seconds at receipt
        self._joints_wall = None     # perf_counter at receipt (latency)
        self._goal = None
        self._odom = None
        self._rewards = []
        self._last_reward = None
        self._episode_reset = False
        self._published_episodes = 0
        self._last_error = None
        self.latencies = []          # seconds from joint_states receipt to command publish

    def _command_msg(self, command):
        """Return the command message, in the controller's joint order when one is set."""
        names = self.adapter.spec.joint_names
        if self._order is not None:
            command = [command[i] for i in self._order]
            names = [names[i] for i in self._order]
        if self.values['command_type'] == 'trajectory':
            position = self.adapter.spec.actuation is not None \
                and self.adapter.spec.actuation.is_position
            return conversions.trajectory_msg(names, command, position, self.period)
        return conversions.command_msg(command)

    # ------------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        """Validate parameters, load the checkpoint and create topics and services."""
        try:
            self.values = values = read_all(self, PARAMETERS)
            validate_topic_name(values['command_topic'])
            config = OnlineConfig(**{k: values[k] for k in CONFIG_FIELDS})
            import torch
            torch.set_num_threads(values['torch_threads'])
            self.adapter = load_adapter(
                values['checkpoint'], config, persist_path=values['persist_path'],
                seed=values['seed'], log=self.get_logger().warning)
            self._order = command_order(self.adapter.spec.joint_names,
                                        values['command_joint_order'])
        except (ValueError, OSError) as err:
            self.get_logger().error(f'configure failed: {err}')
            self.adapter = None
            return TransitionCallbackReturn.FAILURE
        warm = self.adapter.warm_up()
        spec = self.adapter.spec
        period = spec.control_period
        self.period = 1.0 / values['control_rate_hz'] if values['control_rate_hz'] else period
        if not self.period or self.period <= 0:
            self.get_logger().error('configure failed: the checkpoint has no control period; '
                                    'set control_rate_hz')
            return TransitionCallbackReturn.FAILURE
        if period and abs(self.period - period) > 1e-6:
            self.get_logger().warning(f'control period {self.period:.4f}s differs from the '
                                      f'{period:.4f}s the policy was trained at')
        self._sim_time = bool(self.get_parameter('use_sim_time').value)
        # under use_sim_time the node clock ticks with /clock and may lag a state by a period
        self._trigger = StateTrigger(self.period, resync_after=values['state_timeout'],
                                     clock_lag=self.period if self._sim_time else 0.0)
        limits = spec.position_limits
        self._bounds = None if limits is None else position_bounds(limits)
        self._create_entities(values)
        self.get_logger().info(
            f'loaded {values["checkpoint"]}: joints {list(spec.joint_names)}, '
            f'{1.0 / self.period:.1f} Hz, reward {values["reward_source"]}, '
            f'adapt {values["adapt"]}, resumed {self.adapter.stats["resumed"]}, '
            f'update warm-up {warm * 1e3:.0f} ms')
        return TransitionCallbackReturn.SUCCESS

    def _create_entities(self, values):
        self._reset_inputs()
        add = self._entities.append
        self._state_triggered = values['trigger'] == 'state'
        if 'goal' in self.adapter.spec.needs:
            add(self.create_subscription(PointStamped, 'goal', self._on_goal, 10))
        if 'odom' in self.adapter.spec.needs:
            add(self.create_subscription(Odometry, 'odom', self._on_odom,
                                         qos_profile_sensor_data))
        if values['reward_source'] == 'topic':
            add(self.create_subscription(Float64, 'reward', self._on_reward, 10))
        add(self.create_subscription(Empty, 'episode_start', self._on_episode_start, 10))
        # created last: when several inputs of one step are ready together, the executor runs
        # the others first, so a state-triggered command sees that step's reward and goal
        add(self.create_subscription(JointState, 'joint_states', self._on_joints,
                                     qos_profile_sensor_data))
        kind = JointTrajectory if values['command_type'] == 'trajectory' else Float64MultiArray
        self.command_pub = self.create_publisher(kind, values['command_topic'], 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.episode_pub = self.create_publisher(Float64MultiArray, '~/episode_return',
                                                 conversions.EPISODE_RETURN_QOS)
        add(self.command_pub)
        add(self.diag_pub)
        add(self.episode_pub)
        add(self.create_service(Trigger, '~/reset_adaptation', self._srv_reset))
        add(self.create_service(SetBool, '~/enable_adaptation', self._srv_enable))
        add(self.create_service(SetBool, '~/estop', self._srv_estop))

    def on_activate(self, state) -> TransitionCallbackReturn:
        """
        Start control (ramp-in first) and the diagnostics timer.

        With ``trigger: timer`` the control timer computes every command. With ``trigger:
        state`` each joint_states message computes one (at most one per control period) and
        the timer only steps in when no command went out for 1.5 periods: states that stop
        arriving still get the hold command within ``state_timeout``.
        """
        self.adapter.set_estop(self.adapter.estop)   # restart the ramp-in, keep a latched stop
        self._trigger.restart()
        self._timer = self.create_timer(self.period, self._on_timer)
        self._diag_timer = self.create_timer(self.values['diagnostics_period'],
                                             self._publish_diagnostics)
        self.get_logger().info('active: publishing on ' + self.values['command_topic'])
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Stop the control timer and publish the hold command."""
        self._stop_timers()
        self.command_pub.publish(self._command_msg(self.adapter.hold_command()))
        self.get_logger().info('inactive: hold command published')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Persist, then drop topics, services and the adapter."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """Hold, persist and release everything."""
        if self._timer is not None:
            self._stop_timers()
            self.command_pub.publish(self._command_msg(self.adapter.hold_command()))
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _stop_timers(self):
        for timer in (self._timer, getattr(self, '_diag_timer', None)):
            if timer is not None:
                self.destroy_timer(timer)
        self._timer = self._diag_timer = None

    def _teardown(self):
        if self.adapter is not None:
            self.adapter.wait_idle(5.0)
            self.adapter.persist()
        for entity in self._entities:
            for destroy in (self.destroy_subscription, self.destroy_publisher,
                            self.destroy_service):
                if destroy(entity):
                    break
        self._entities = []
        self.adapter = None

    def _on_set_parameters(self, params):
        """Apply a runtime change or refuse it (successful=False, with the reason)."""
        from rcl_interfaces.msg import SetParametersResult
        try:
            changes = {p.name: check_value(find_param(PARAMETERS, p.name), p.value)
                       for p in params}
            if self.adapter is None:
                check_unconfigured_change(changes)
            else:
                self._apply_live(changes)
        except ValueError as err:
            self.get_logger().warning(f'parameter change refused: {err}')
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_live(self, changes):
        """Apply changes of LIVE_FIELDS to the running adapter; ValueError for the others."""
        frozen = sorted(set(changes) - set(LIVE_FIELDS))
        if frozen:
            raise ValueError(f'{", ".join(frozen)} cannot change while the node is configured '
                             f'(only {", ".join(LIVE_FIELDS)} can): deactivate and clean up the '
                             'node, set it, then configure and activate again')
        config = dataclasses.replace(self.adapter.config, **changes)   # validates
        self.adapter.config = config
        if 'adapt' in changes:
            self.adapter.set_adaptation(config.adapt)
        self._trigger.resync_after = config.state_timeout
        self.values.update(changes)
        self.get_logger().info(f'parameters changed: {changes}')

    # --------------------------------------------------------------------------- inputs
    def _now(self):
        return self.get_clock().now().nanoseconds * 1e-9

    def _monotonic(self):
        """Return the clock the command rate is judged on: sim time, else time.monotonic()."""
        return self._now() if self._sim_time else time.monotonic()

    def _on_joints(self, msg):
        try:
            joints = conversions.joint_arrays(msg, self.adapter.spec.joint_names)
            check_joint_positions(joints[0], self.adapter.spec.joint_names, self._bounds)
        except ValueError as err:
            self._log_input_error(f'bad joint_states: {err}')
            joints = None
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:     # with a reward topic: act once this step's reward is in too
            waiting = self.values['reward_source'] == 'topic' and not self._rewards
        decision = self._trigger.on_state(stamp, self._monotonic(), reward_ready=not waiting)
        if decision == DROP:
            return          # out of order or a repeated stamp: counted in /diagnostics
        with self._lock:
            self._joints, self._joints_time = joints, self._now()
            self._joints_wall = time.perf_counter()
        if decision == ACT and self._state_triggered and self._timer is not None:
            self._control_step()

    def _log_input_error(self, text):
        """Log a new kind of input error at once, a repeated one at most once a second."""
        kind = re.sub(r'-?\d[\d.e+-]*', '#', text)     # the same error with other numbers
        if kind != self._last_error:
            self._last_error = kind
            self.get_logger().error(text)
        else:
            self.get_logger().error(text, throttle_duration_sec=1.0)

    def _on_goal(self, msg):
        with self._lock:
            self._goal = conversions.point_array(msg)

    def _on_odom(self, msg):
        try:
            fields = conversions.odometry_fields(msg)
        except ValueError as err:
            self._log_input_error(f'bad odom: {err}')
            fields = None
        with self._lock:
            self._odom = fields

    def _on_reward(self, msg):
        with self._lock:
            self._rewards.append(float(msg.data))
        if self._trigger.on_reward(self._monotonic()) and self._state_triggered \
                and self._timer is not None:
            self._control_step()     # the state came first: its command goes out now

    def _on_episode_start(self, msg):
        with self._lock:
            self._episode_reset = True

    def _take_inputs(self):
        """Return (RobotState or None, age, reward or None) and clear the per-step inputs."""
        from maml_robot.observation import RobotState
        with self._lock:
            joints, stamp, goal, odom = self._joints, self._joints_time, self._goal, self._odom
            rewards, self._rewards = self._rewards, []
            reset, self._episode_reset = self._episode_reset, False
            wall = self._joints_wall
        if rewards:
            self._last_reward = float(np.mean(rewards))
        reward = self._last_reward if self.values['reward_source'] == 'topic' else None
        needs = self.adapter.spec.needs
        if joints is None or ('goal' in needs and goal is None) or (
                'odom' in needs and odom is None):
            return None, math.inf, reward, reset, wall
        state = RobotState(joint_position=joints[0], joint_velocity=joints[1], goal=goal,
                           **(odom or {}))
        return state, self._now() - stamp, reward, reset, wall

    # ------------------------------------------------------------------------- control
    def _on_timer(self):
        if not self._state_triggered:
            self._control_step()
            return
        now = self._monotonic()
        if self._trigger.standby_due(now):     # the state stream stopped or is too slow
            self._trigger.on_command(now)
            self._control_step()

    def _control_step(self):
        state, age, reward, reset, wall = self._take_inputs()
        cmd = self.adapter.act(state, age, reward, episode_start=reset)
        self.command_pub.publish(self._command_msg(cmd.effort))
        if wall is not None and cmd.mode != MODE_STALE:
            self.latencies.append(time.perf_counter() - wall)
            del self.latencies[:-2000]
        if cmd.mode in (MODE_STALE, MODE_BAD_OBS, MODE_BAD_ACTION):
            self.get_logger().warning(f'holding: {cmd.mode} (state age {age:.3f}s)',
                                      throttle_duration_sec=1.0)
        self._publish_episodes()

    def _publish_episodes(self):
        returns = self.adapter.episode_returns
        while self._published_episodes < len(returns):
            ret, adaptations = returns[self._published_episodes]
            steps = self.adapter.episode_lengths[self._published_episodes]
            self._published_episodes += 1
            self.episode_pub.publish(Float64MultiArray(
                data=[float(self._published_episodes), ret, float(adaptations), float(steps)]))
            self.get_logger().info(f'episode {self._published_episodes}: return {ret:.3f} '
                                   f'after {adaptations} adaptations, {steps} steps')

    def _publish_diagnostics(self):
        stats = dict(self.adapter.stats)
        timer_only = ('commands', 'decimated')   # in timer mode states trigger no command
        stats.update({f'trigger_{k}': v for k, v in
                      dataclasses.asdict(self._trigger.stats).items()
                      if self._state_triggered or k not in timer_only})
        lat = np.asarray(self.latencies[-500:]) * 1e3
        status = DiagnosticStatus(name='maml_robot/adapter', hardware_id='adapter_node')
        status.level = DiagnosticStatus.OK
        status.message = 'adapting' if self.adapter.adapt_enabled else 'adaptation disabled'
        if self.adapter.estop:
            status.level, status.message = DiagnosticStatus.WARN, 'e-stop engaged'
        elif self.adapter.frozen:
            status.level, status.message = DiagnosticStatus.WARN, 'stale state: holding'
        stats['latency_p50_ms'] = float(np.percentile(lat, 50)) if lat.size else math.nan
        stats['latency_p99_ms'] = float(np.percentile(lat, 99)) if lat.size else math.nan
        stats['latency_max_ms'] = float(lat.max()) if lat.size else math.nan
        status.values = [KeyValue(key=k, value=str(v)) for k, v in stats.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    # ------------------------------------------------------------------------ services
    def _srv_reset(self, request, response):
        self.adapter.reset_adaptation()
        response.success, response.message = True, 'back to the meta-parameters'
        self.get_logger().info(response.message)
        return response

    def _srv_enable(self, request, response):
        self.adapter.set_adaptation(request.data)
        response.success = True
        response.message = 'adaptation ' + ('enabled' if request.data else 'disabled')
        self.get_logger().info(response.message)
        return response

    def _srv_estop(self, request, response):
        self.adapter.set_estop(request.data)
        if request.data:
            self.command_pub.publish(self._command_msg(self.adapter.hold_command()))
        response.success = True
        response.message = 'e-stop ' + ('engaged (latched)' if request.data else 'released')
        self.get_logger().warning(response.message)
        return response


def check_unconfigured_change(changes):
    """Refuse a change that would fail the next configure (a checkpoint file that is missing)."""
    from maml_robot.online import resolve_checkpoint
    name = changes.get('checkpoint')
    if name is not None and not resolve_checkpoint(name).is_file():
        raise ValueError(f'checkpoint {name!r}: no such file; give a .safetensors path or a '
                         'shipped model name (maml_robot/models)')


def _autostart(node):
    """Configure and activate at start-up when ``autostart`` is set; 1 if configure failed."""
    if node.get_parameter('autostart').value:
        node.trigger_configure()
        if node.adapter is None:
            return 1
        node.trigger_activate()
    return 0


def _persist(node):
    if node.adapter is not None:
        node.adapter.persist()


def main(args=None):
    """Run the adapter node until shutdown; autostart configures and activates it."""
    return run_node('adapter_node', AdapterNode, args, start=_autostart, stop=_persist)


if __name__ == '__main__':
    sys.exit(main())
