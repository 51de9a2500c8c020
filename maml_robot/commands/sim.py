"""``maml-robot sim``: run sim_node from its params file (what ``ros2 run`` does with a distro)."""

from maml_robot.commands.arguments import domain_id
from maml_robot.ros import launcher


def add_node_arguments(parser, params_file, example):
    """Add the options every node command takes (params files, overrides, domain id)."""
    parser.add_argument('--params-file', action='append', default=None,
                        help=f'ROS 2 params file (repeatable); default: {params_file}')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help=f'override one parameter, e.g. --set {example}')
    parser.add_argument('--domain-id', type=domain_id, default=None, help='ROS_DOMAIN_ID to use')


def add_arguments(parser):
    """Add the node's options."""
    add_node_arguments(parser, 'config/sim.yaml', 'task_split=ood')


def run_node(node, args):
    """
    Run ``node`` in a child process until it exits or is stopped; return the exit code.

    The node's own code when it exits; 128 + N when SIGINT, SIGTERM or SIGHUP (N) stopped
    this command (the signal is forwarded to the node, which is waited for).
    """
    # lazy: ros.params_file imports rclpy; `maml-robot --help` must not load it
    from maml_robot.ros.params_file import check_params_files
    table = launcher.node_parameters(node)
    overrides = launcher.parse_overrides(args.set, table)
    argv = launcher.node_command(node, args.params_file, overrides)
    check_params_files(args.params_file or [launcher.default_params_file(node)], node, table)
    with launcher.NodeProcesses(args.domain_id) as procs:
        return procs.supervise(
            {node: argv}, lambda: launcher.exit_code(procs.procs[node].wait()))


def run(args):
    """Run sim_node."""
    return run_node('sim_node', args)
