"""adapter_node: lifecycle node that runs a meta-policy and adapts it online (thin over online)."""

import dataclasses
import re
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PointStamped
from maml_robot.online import (load_adapter, MODE_BAD_ACTION, MODE_BAD_OBS, MODE_STALE,
                               OnlineConfig)
from maml_robot.online.config import command_order
from maml_robot.online.diagnostics import adapter_status, RepeatGate
from maml_robot.online.inputs import LiveInputs, PlausibleJoints
from maml_robot.online.loading import check_checkpoint_exists
from maml_robot.online.node_config import NodeConfig
from maml_robot.online.robot_limits import ROBOT_DESCRIPTION_TOPIC, robot_model
from maml_robot.online.trigger import ACT, DROP, StateTrigger
from maml_robot.ros import conversions
from maml_robot.ros.params import (check_value, declare_all, find_param, live_names,
                                   params_from, read_all)
from maml_robot.ros.spin import run_node
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from rclpy.validate_topic_name import validate_topic_name
from rclpy.wait_for_message import wait_for_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Empty, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger
import torch
from trajectory_msgs.msg import JointTrajectory

PARAMETERS = params_from(NodeConfig) + params_from(OnlineConfig)
"""The node's parameters: every field of NodeConfig and OnlineConfig (maml_robot/online)."""
NODE_FIELDS = tuple(p.name for p in params_from(NodeConfig))
CONFIG_FIELDS = tuple(p.name for p in params_from(OnlineConfig))
LIVE_FIELDS = live_names(OnlineConfig)
"""Applied at once when set while configured; any other change waits for the next configure."""


class AdapterNode(LifecycleNode):
    """Lifecycle node: configure loads the checkpoint, activate starts the control timer."""

    def __init__(self, **kwargs):
        """Declare the parameters (a bad value raises ValueError naming it)."""
        super().__init__('adapter_node', **kwargs)
        declare_all(self, PARAMETERS)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.adapter = None
        self._order = None           # command_joint_order as indices (None: checkpoint order)
        self._timer = self._diag_timer = None
        self._entities = []
        self._log_gate = RepeatGate(1.0)   # each new hold reason or input error at once
        self.last_input_error = None  # the text of the last rejected input (also logged)
        self.latencies = []          # seconds from joint_states receipt to command publish

    def _command_msg(self, command):
        """Return the command message, in the controller's joint order when one is set."""
        names = self.adapter.spec.joint_names
        if self._order is not None:
            command = [command[i] for i in self._order]
            names = [names[i] for i in self._order]
        if self.settings.command_type == 'trajectory':
            position = self.adapter.spec.actuation is not None \
                and self.adapter.spec.actuation.is_position
            return conversions.trajectory_msg(names, command, position, self.period)
        return conversions.command_msg(command)

    # ------------------------------------------------------------------------ lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        """Validate parameters, read the robot's limits, load the checkpoint, create topics."""
        try:
            values = read_all(self, PARAMETERS)
            self.settings = settings = NodeConfig(**{k: values[k] for k in NODE_FIELDS})
            config = OnlineConfig(**{k: values[k] for k in CONFIG_FIELDS})
            validate_topic_name(settings.command_topic)
            torch.set_num_threads(settings.torch_threads)
            robot, source = self._robot_description(settings)
            self.adapter = load_adapter(
                settings.checkpoint, config, persist_path=settings.persist_path,
                seed=settings.seed, log=self.get_logger().warning, robot=robot,
                robot_source=source, limit_tolerance=settings.limit_tolerance)
            self._order = command_order(self.adapter.spec.joint_names,
                                        settings.command_joint_order)
            settings.check_actuation(self.adapter.spec.actuation)
            self.period = self._control_period(settings.control_rate_hz)
        except (ValueError, OSError) as err:
            self.get_logger().error(f'configure failed: {err}')
            self.adapter = None
            return TransitionCallbackReturn.FAILURE
        warm = self.adapter.warm_up()
        spec = self.adapter.spec
        self._sim_time = bool(self.get_parameter('use_sim_time').value)
        # under use_sim_time the node clock ticks with /clock and may lag a state by a period
        self._trigger = StateTrigger(self.period, resync_after=config.state_timeout,
                                     clock_lag=self.period if self._sim_time else 0.0)
        self._plausible = PlausibleJoints(spec)
        self._create_entities(settings)
        self.get_logger().info(
            f'loaded {settings.checkpoint}: joints {list(spec.joint_names)}, limits from '
            f'{spec.limits_source}, {1.0 / self.period:.1f} Hz, reward {settings.reward_source}, '
            f'adapt {config.adapt}, resumed {self.adapter.stats["resumed"]}, '
            f'update warm-up {warm * 1e3:.0f} ms')
        return TransitionCallbackReturn.SUCCESS

    def _robot_description(self, settings):
        """
        Return (the robot's UrdfModel or None, where it was read).

        The ``robot_description`` file when set; else the ``robot_description`` topic, waited
        for ``robot_description_timeout`` s (transient local: a description published before
        this node started arrives too). Without one: ValueError if it is required, else None
        and a warning (the checkpoint's own URDF limits are used).
        """
        if settings.robot_description:
            return robot_model(settings.robot_description), settings.robot_description
        topic = self.resolve_topic_name(ROBOT_DESCRIPTION_TOPIC)
        wait = settings.robot_description_timeout
        if wait > 0:
            ok, msg = wait_for_message(String, self, ROBOT_DESCRIPTION_TOPIC, time_to_wait=wait,
                                       qos_profile=conversions.ROBOT_DESCRIPTION_QOS)
            if ok:
                return robot_model(text=msg.data, where=topic), topic
        missing = 'no robot description: robot_description (a URDF file) is not set and ' + (
            f'nothing arrived on {topic} within robot_description_timeout {wait:g} s' if wait
            else 'robot_description_timeout is 0 (the topic is not read)')
        if settings.require_robot_description:
            raise ValueError(missing + '; start robot_state_publisher, set robot_description, '
                             'or set require_robot_description false')
        self.get_logger().warning(missing + ': clamping to the limits of the URDF the '
                                  'checkpoint was trained with')
        return None, ''

    def _control_period(self, rate_hz):
        """Return the command period: 1 / control_rate_hz, else the checkpoint's."""
        trained = self.adapter.spec.control_period
        period = 1.0 / rate_hz if rate_hz else trained
        if not period or period <= 0:
            raise ValueError('the checkpoint has no control period; set control_rate_hz')
        if trained and abs(period - trained) > 1e-6:
            self.get_logger().warning(f'control period {period:.4f}s differs from the '
                                      f'{trained:.4f}s the policy was trained at')
        return period

    def _create_entities(self, settings):
        spec = self.adapter.spec
        self._inputs = LiveInputs(spec.needs, reward_topic=settings.reward_source == 'topic')
        self._published_episodes = 0
        self._log_gate = RepeatGate(1.0)
        self.latencies = []
        add = self._entities.append
        self._state_triggered = settings.trigger == 'state'
        if 'goal' in spec.needs:
            add(self.create_subscription(PointStamped, 'goal', self._on_goal, 10))
        if 'odom' in spec.needs:
            add(self.create_subscription(Odometry, 'odom', self._on_odom,
                                         qos_profile_sensor_data))
        if settings.reward_source == 'topic':
            add(self.create_subscription(Float64, 'reward', self._on_reward, 10))
        add(self.create_subscription(Empty, 'episode_start',
                                     lambda msg: self._inputs.put_episode_start(), 10))
        # created last: when several inputs of one step are ready together, the executor runs
        # the others first, so a state-triggered command sees that step's reward and goal
        add(self.create_subscription(JointState, 'joint_states', self._on_joints,
                                     qos_profile_sensor_data))
        kind = JointTrajectory if settings.command_type == 'trajectory' else Float64MultiArray
        self.command_pub = self.create_publisher(kind, settings.command_topic, 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.episode_pub = self.create_publisher(Float64MultiArray, '~/episode_return',
                                                 conversions.EPISODE_RETURN_QOS)
        for entity in (self.command_pub, self.diag_pub, self.episode_pub):
            add(entity)
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
        self._diag_timer = self.create_timer(self.settings.diagnostics_period,
                                             self._publish_diagnostics)
        self.get_logger().info('active: publishing on ' + self.settings.command_topic)
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
        for timer in (self._timer, self._diag_timer):
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
        try:
            changes = {p.name: check_value(find_param(PARAMETERS, p.name), p.value)
                       for p in params}
            if self.adapter is None:
                check_checkpoint_exists(changes.get('checkpoint'))
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
            self._plausible.check(*joints)
        except ValueError as err:
            self._log_input_error(f'bad joint_states: {err}')
            joints = None
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        decision = self._trigger.on_state(stamp, self._monotonic(),
                                          reward_ready=not self._inputs.waiting_for_reward())
        if decision == DROP:
            return          # out of order or a repeated stamp: counted in /diagnostics
        self._inputs.put_joints(joints, self._now(), time.perf_counter())
        if decision == ACT and self._state_triggered and self._timer is not None:
            self._control_step()

    def _log_input_error(self, text):
        """Log a new kind of input error at once, a repeated one at most once a second; keep it."""
        self.last_input_error = text
        kind = re.sub(r'-?\d[\d.e+-]*', '#', text)     # the same error with other numbers
        if self._log_gate.allow(kind, time.monotonic()):
            self.get_logger().error(text)

    def _on_goal(self, msg):
        self._inputs.put_goal(conversions.point_array(msg))

    def _on_odom(self, msg):
        try:
            fields = conversions.odometry_fields(msg)
        except ValueError as err:
            self._log_input_error(f'bad odom: {err}')
            fields = None
        self._inputs.put_odom(fields)

    def _on_reward(self, msg):
        self._inputs.put_reward(msg.data)
        if self._trigger.on_reward(self._monotonic()) and self._state_triggered \
                and self._timer is not None:
            self._control_step()     # the state came first: its command goes out now

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
        step = self._inputs.take(self._now())
        cmd = self.adapter.act(step.state, step.age, step.reward,
                               episode_start=step.episode_start,
                               joint_position=step.joint_position)
        if not self.adapter.may_command:
            if self._log_gate.allow('no_pose', time.monotonic()):
                self.get_logger().warning('no joint_states yet: publishing nothing (a gravity '
                                          'hold needs the pose; zero effort would drop the arm)')
            return
        self.command_pub.publish(self._command_msg(cmd.effort))
        if step.received is not None and cmd.mode != MODE_STALE:
            self.latencies.append(time.perf_counter() - step.received)
            del self.latencies[:-2000]
        if cmd.mode in (MODE_STALE, MODE_BAD_OBS, MODE_BAD_ACTION) \
                and self._log_gate.allow(cmd.mode, time.monotonic()):   # a new reason at once
            self.get_logger().warning(f'holding: {cmd.mode} (state age {step.age:.3f}s)')
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
        warn, message, values = adapter_status(self.adapter, self._trigger.stats,
                                               self._state_triggered, self.latencies)
        status = DiagnosticStatus(name='maml_robot/adapter', hardware_id='adapter_node',
                                  message=message, level=DiagnosticStatus.WARN if warn
                                  else DiagnosticStatus.OK)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
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
    return run_node('adapter_node', AdapterNode, args, start=_autostart, stop=_persist,
                    parameters=PARAMETERS)


if __name__ == '__main__':
    sys.exit(main())
