"""``maml-robot adapt``: run adapter_node from its params file (autostart, no manager)."""

from maml_robot.commands.sim import run_node

HELP = 'run the online adapter node (ROS 2) from config/adapter.yaml plus overrides'


def add_arguments(parser):
    """Add the node's options."""
    parser.add_argument('--params-file', action='append', default=None,
                        help='ROS 2 params file (repeatable); default: config/adapter.yaml')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='override one parameter, e.g. --set checkpoint=model.safetensors')
    parser.add_argument('--domain-id', type=int, default=None, help='ROS_DOMAIN_ID to use')


def run(args):
    """Run adapter_node."""
    return run_node('adapter_node', args)
