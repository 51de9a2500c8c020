"""Settings of the adapter node around the OnlineAdapter: what it runs, where commands go."""

from dataclasses import dataclass

from maml_robot.settings import setting, validate


@dataclass(frozen=True)
class NodeConfig:
    """
    The adapter node's own settings; with ``OnlineConfig``'s they are its ROS parameters.

    None of these can change while the node is configured: set them, then configure again.
    """

    checkpoint: str = setting('reacher')
    """Meta-policy: a .safetensors path or a shipped model name (maml_robot/models)."""
    control_rate_hz: float = setting(0.0, bounds='[0.0, 1000.0]')
    """Command rate; 0 = the control period the checkpoint was trained at."""
    trigger: str = setting('state', choices=('state', 'timer'))
    """state: one command per joint_states message (at most control_rate_hz), computed on
    receipt; timer: a command every control period from the latest state."""
    command_topic: str = setting('/forward_effort_controller/commands')
    """Where commands go (std_msgs/Float64MultiArray, or JointTrajectory with command_type
    trajectory)."""
    command_joint_order: str = setting('')
    """The controller's joint order, comma-separated (its joints parameter); '' = the
    checkpoint's order (joint names sorted)."""
    command_type: str = setting('array', choices=('array', 'trajectory'))
    """array: std_msgs/Float64MultiArray (forward_command_controller); trajectory:
    trajectory_msgs/JointTrajectory, one point a period ahead (joint_trajectory_controller;
    position and torque mode only: a velocity-mode checkpoint fails to configure)."""
    reward_source: str = setting('internal', choices=('internal', 'topic'))
    """internal: compute_reward from observed states; topic: std_msgs/Float64 on reward."""
    robot_description: str = setting('')
    """The robot's URDF file; '' = read the robot_description topic (std_msgs/String,
    transient local, as robot_state_publisher publishes it)."""
    robot_description_timeout: float = setting(2.0, bounds='[0.0, 600.0]')
    """Seconds configure waits for the robot_description topic (when robot_description is '');
    0 = do not read the topic."""
    require_robot_description: bool = setting(False)
    """True: configure fails without a robot description (file or topic); False: it then
    clamps to the limits of the URDF the checkpoint was trained with, and warns."""
    limit_tolerance: float = setting(0.01, bounds='[0.0, 1.0]')
    """Largest relative difference between the robot's limits (effort, position, velocity) and
    the ones the checkpoint was trained with; beyond it configure fails, naming the joint."""
    torch_threads: int = setting(1, bounds='[1, 256]')
    """Torch intra-op threads."""
    persist_path: str = setting('')
    """Save accepted adapted parameters here and resume from them on restart; '' = off."""
    seed: int = setting(0, bounds='[0, 2147483647]')  # 2 ** 31 - 1
    """Seed of the exploration noise."""
    diagnostics_period: float = setting(1.0, bounds='[0.01, 3600.0]')
    """Seconds between /diagnostics messages."""
    autostart: bool = setting(False)
    """Configure and activate at start-up (no lifecycle manager)."""

    def __post_init__(self):
        """Check every field against its type, range and choices."""
        validate(self)

    def check_actuation(self, actuation) -> None:
        """
        Refuse settings that do not fit the checkpoint's control mode, saying what to set.

        ``command_type`` trajectory with a velocity-mode ``actuation`` (an Actuation, or None
        for an old torque checkpoint): the policy was trained on a drive that tracks its joint
        velocities, which forward_velocity_controller forwards to the velocity interface; a
        joint_trajectory_controller follows waypoint POSITIONS (on a velocity interface
        through its own position PID), not the drive the policy learned on.
        """
        if self.command_type == 'trajectory' and actuation is not None \
                and actuation.is_velocity:
            raise ValueError("command_type 'trajectory' does not fit a velocity-mode "
                             'checkpoint: joint_trajectory_controller follows positions, the '
                             "policy commands velocities; set command_type 'array' and send "
                             'the commands to a forward_velocity_controller (command_topic '
                             "'/forward_velocity_controller/commands')")
