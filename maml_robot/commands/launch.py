"""``maml-robot launch``: sim_node + adapter_node, the pip user's sim_adapt.launch.py."""

from pathlib import Path
import tempfile
import time

from maml_robot.checkpoint import load_checkpoint
from maml_robot.commands.arguments import domain_id
from maml_robot.ros import launcher
from maml_robot.scenario import checkpoint_reference, load_scenario, write_scenario_yaml


COMMAND_TOPICS = {'torque': '/forward_effort_controller/commands',
                  'position': '/forward_position_controller/commands',
                  'velocity': '/forward_velocity_controller/commands'}
"""Where a ros2_control forward_command_controller of each control mode listens."""


def add_arguments(parser):
    """Add the options (the launch file's arguments)."""
    parser.add_argument('--checkpoint', default='reacher', help='meta-policy file or model name')
    parser.add_argument('--scenario', default=None,
                        help='robot and tasks of the sim (name or YAML; default: the '
                        "checkpoint's own, from the snapshot it carries)")
    parser.add_argument('--task-split', default='test', help='nominal, train, test or ood')
    parser.add_argument('--task-index', type=int, default=0)
    parser.add_argument('--real-time-factor', type=float, default=1.0)
    parser.add_argument('--domain-id', type=domain_id, default=None, help='ROS_DOMAIN_ID to use')


def sim_scenario(args, folder):
    """Return (scenario file or name for the sim node, control mode) for ``args``."""
    # lazy: the online adapter package (0.03 s) only to resolve a shipped model name
    from maml_robot.online.loading import resolve_checkpoint
    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    reference = checkpoint_reference(ckpt.scenario_name, ckpt.scenario, args.scenario)
    scenario = load_scenario(reference)
    if isinstance(reference, dict):   # the checkpoint's own robot: a file the sim can read
        reference = str(write_scenario_yaml(scenario, Path(folder) / 'scenario.yaml'))
    return reference, scenario.control_mode


def run(args):
    """Run both nodes until Ctrl-C or until one exits."""
    with tempfile.TemporaryDirectory(prefix='maml_robot_launch_') as folder:
        scenario, mode = sim_scenario(args, folder)
        topic = COMMAND_TOPICS[mode]
        sim = launcher.node_command('sim_node', overrides={
            'scenario': scenario, 'command_topic': topic, 'task_split': args.task_split,
            'task_index': args.task_index, 'real_time_factor': args.real_time_factor})
        adapter = launcher.node_command('adapter_node', overrides={
            'checkpoint': args.checkpoint, 'reward_source': 'topic', 'use_sim_time': True,
            'command_topic': topic, 'robot_description_timeout': launcher.DESCRIPTION_WAIT})
        return _run_nodes(args, sim, adapter)


def _run_nodes(args, sim, adapter):
    """Run both nodes: 1 when one exits, 128 + N when signal N stopped this command."""
    def watch():
        try:
            while True:
                procs.check_alive()
                time.sleep(0.5)
        except RuntimeError as err:
            print(f'maml-robot launch: {err}')
            return 1

    with launcher.NodeProcesses(args.domain_id) as procs:
        return procs.supervise({'sim_node': sim, 'adapter_node': adapter}, watch)
