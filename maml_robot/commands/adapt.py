"""``maml-robot adapt``: run adapter_node from its params file (autostart, no manager)."""

from maml_robot.commands.sim import add_node_arguments, run_node


def add_arguments(parser):
    """Add the node's options."""
    add_node_arguments(parser, 'config/adapter.yaml', 'checkpoint=model.safetensors')


def run(args):
    """Run adapter_node."""
    return run_node('adapter_node', args)
