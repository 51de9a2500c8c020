"""``maml-robot launch``: sim_node + adapter_node, the pip user's sim_adapt.launch.py."""

import time

from maml_robot.commands.arguments import domain_id
from maml_robot.ros import launcher

HELP = 'start sim_node and adapter_node together (like ros2 launch maml_robot sim_adapt)'


def add_arguments(parser):
    """Add the options (the launch file's arguments)."""
    parser.add_argument('--checkpoint', default='reacher', help='meta-policy file or model name')
    parser.add_argument('--task-split', default='test', help='nominal, train, test or ood')
    parser.add_argument('--task-index', type=int, default=0)
    parser.add_argument('--real-time-factor', type=float, default=1.0)
    parser.add_argument('--domain-id', type=domain_id, default=None, help='ROS_DOMAIN_ID to use')


def run(args):
    """Run both nodes until Ctrl-C or until one exits."""
    sim = launcher.node_command('sim_node', overrides={
        'task_split': args.task_split, 'task_index': args.task_index,
        'real_time_factor': args.real_time_factor})
    adapter = launcher.node_command('adapter_node', overrides={
        'checkpoint': args.checkpoint, 'reward_source': 'topic', 'use_sim_time': True})
    with launcher.NodeProcesses(args.domain_id) as procs:
        procs.start('sim_node', sim)
        procs.start('adapter_node', adapter)
        try:
            while True:
                procs.check_alive()
                time.sleep(0.5)
        except RuntimeError as err:
            print(f'maml-robot launch: {err}')
            return 1
        except KeyboardInterrupt:
            return 0
