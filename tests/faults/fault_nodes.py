"""Helpers of the fault tests: an adapter node driven in process, without DDS traffic."""

from maml_robot import online
from maml_robot.checkpoint import save_checkpoint
from maml_robot.scenario import load_scenario
import rclpy
from rclpy.parameter import Parameter
from ros_domains import domain_id
from sensor_msgs.msg import JointState

JOINTS = ('elbow_joint', 'shoulder_joint')


def fresh_checkpoint(path, **changes):
    """Write a fresh reacher checkpoint (dataclass fields replaced by ``changes``)."""
    import dataclasses
    ckpt = online.fresh_checkpoint(load_scenario('reacher'), seed=0)
    save_checkpoint(path, dataclasses.replace(ckpt, **changes))
    return path


class InProcessAdapter:
    """An AdapterNode configured and activated in process; commands are counted, not sent."""

    def __init__(self, checkpoint, **params):
        from maml_robot.ros.adapter_node import AdapterNode
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id())
        # no DDS traffic: no robot_description topic to wait for (the trained limits apply)
        values = {'checkpoint': str(checkpoint), 'adapt': False, 'ramp_in_steps': 0,
                  'fade_in_steps': 0, 'robot_description_timeout': 0.0}
        values.update(params)
        self.node = AdapterNode(context=self.context, parameter_overrides=[
            Parameter(k, value=v) for k, v in values.items()])
        self.commands = []
        self.clock = [1000.0]         # the fake monotonic clock, s
        self.node._monotonic = lambda: self.clock[0]

    def start(self):
        """Configure and activate; return the lifecycle results."""
        results = (self.node.trigger_configure(), self.node.trigger_activate())
        if self.node.adapter is not None:
            self.node.command_pub.publish = lambda msg: self.commands.append(list(msg.data))
        return results

    def send(self, stamp=None, names=JOINTS, pos=(0.3, -0.4), vel=(0.1, 0.2)):
        """Deliver one joint_states message (stamp in s; None = unstamped) and the goal."""
        from geometry_msgs.msg import PointStamped
        goal = PointStamped()
        goal.point.x, goal.point.y, goal.point.z = 0.1, 0.1, 0.03
        self.node._on_goal(goal)
        msg = JointState(name=list(names), position=[float(v) for v in pos],
                         velocity=[float(v) for v in vel])
        if stamp is not None:
            msg.header.stamp.sec = int(stamp)
            msg.header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9)) % 1000000000
        self.node._on_joints(msg)

    def close(self):
        """Destroy the node and the context."""
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
