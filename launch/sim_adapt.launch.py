"""Simulated robot + online adapter: sim_node, robot_state_publisher and adapter_node."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = 'maml_robot'


def generate_launch_description():
    """Return the sim + adapter launch description (parameters from config/*.yaml)."""
    share = get_package_share_directory(PACKAGE)
    sim_params = os.path.join(share, 'config', 'sim.yaml')
    adapter_params = os.path.join(share, 'config', 'adapter.yaml')
    with open(os.path.join(share, 'urdf', 'reacher.urdf')) as f:
        robot_description = f.read()
    checkpoint = LaunchConfiguration('checkpoint')
    command_topic = LaunchConfiguration('command_topic')
    return LaunchDescription([
        DeclareLaunchArgument('checkpoint', default_value='reacher',
                              description='meta-policy .safetensors or shipped model name'),
        DeclareLaunchArgument('task_split', default_value='test',
                              description='dynamics split: nominal, train, test or ood'),
        DeclareLaunchArgument('task_index', default_value='0',
                              description='task index in the split'),
        DeclareLaunchArgument('real_time_factor', default_value='1.0',
                              description='sim seconds per wall second'),
        DeclareLaunchArgument('command_topic',
                              default_value='/forward_effort_controller/commands',
                              description='effort command topic'),
        Node(package=PACKAGE, executable='sim_node', name='sim_node', output='screen',
             parameters=[sim_params, {
                 'task_split': LaunchConfiguration('task_split'),
                 'task_index': ParameterValue(LaunchConfiguration('task_index'), value_type=int),
                 'real_time_factor': ParameterValue(LaunchConfiguration('real_time_factor'),
                                                    value_type=float),
                 'command_topic': command_topic,
                 # robot_state_publisher below publishes robot_description (one publisher)
                 'publish_robot_description': False}]),
        Node(package='robot_state_publisher', executable='robot_state_publisher',
             name='robot_state_publisher', output='screen',
             parameters=[{'robot_description': robot_description, 'use_sim_time': True}]),
        Node(package=PACKAGE, executable='adapter_node', name='adapter_node', output='screen',
             parameters=[adapter_params, {'checkpoint': checkpoint,
                                          'command_topic': command_topic,
                                          'reward_source': 'topic',
                                          'use_sim_time': True}]),
    ])
