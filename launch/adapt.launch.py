"""Online adapter only, for a real robot (ros2_control forward_command_controller)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = 'maml_robot'


def generate_launch_description():
    """Return the adapter launch description (parameters from config/adapter.yaml)."""
    share = get_package_share_directory(PACKAGE)
    adapter_params = os.path.join(share, 'config', 'adapter.yaml')
    return LaunchDescription([
        DeclareLaunchArgument('checkpoint', default_value='reacher',
                              description='meta-policy .safetensors or shipped model name'),
        DeclareLaunchArgument('command_topic',
                              default_value='/forward_effort_controller/commands',
                              description='effort command topic of the controller'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the adapter (and its topics)'),
        DeclareLaunchArgument('params_file', default_value=adapter_params,
                              description='adapter parameters file'),
        DeclareLaunchArgument('require_robot_description', default_value='true',
                              description='refuse to start without the URDF of the robot (the '
                              'robot_description topic or parameter) to clamp to'),
        Node(package=PACKAGE, executable='adapter_node', name='adapter_node', output='screen',
             namespace=LaunchConfiguration('namespace'),
             parameters=[LaunchConfiguration('params_file'),
                         {'checkpoint': LaunchConfiguration('checkpoint'),
                          'command_topic': LaunchConfiguration('command_topic'),
                          'require_robot_description': ParameterValue(
                              LaunchConfiguration('require_robot_description'),
                              value_type=bool)}]),
    ])
