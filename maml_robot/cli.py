"""The ``maml-robot`` command: one entry point, one module per sub-command."""

import argparse
import importlib
import sys

# name -> (module under maml_robot.commands, its one-line help). Each module defines
#   add_arguments(parser: argparse.ArgumentParser) -> None, run(args) -> int
# The help is here, not in the module: `maml-robot --help` lists the commands without importing
# them (train's flags come from TrainConfig, beside the learners and torch; showcase imports the
# PyBullet envs), and a command imports only its own module.
COMMANDS = {
    'showcase': ('maml_robot.commands.showcase',
                 'Roll out a fixed controller under sampled dynamics of each split (train, test, '
                 'ood) and print what changed and the returns (nominal controller, oracle, zero '
                 'action).'),
    'train': ('maml_robot.commands.train',
              'meta-train a policy on a scenario (TensorBoard/CSV logs, checkpoints, --resume)'),
    'eval': ('maml_robot.commands.evaluate',
             'Evaluate checkpoints on the test/ood split: returns after 0..K inner steps with '
             'bootstrap CIs, normalized score, negative-adaptation rate; JSON/CSV/markdown/PNG.'),
    'baseline': ('maml_robot.commands.baseline',
                 'Train/evaluate a baseline on the same tasks and budgets as `maml-robot eval`: '
                 'ppo-dr, multitask, oracle or random. Models are cached; results go to --out.'),
    'demo': ('maml_robot.commands.demo',
             'sim robot with unseen dynamics + online adapter over real ROS 2 topics; prints the '
             'return per episode and plots it'),
    'sim': ('maml_robot.commands.sim',
            'run the PyBullet sim node (ROS 2) from config/sim.yaml plus overrides'),
    'adapt': ('maml_robot.commands.adapt',
              'run the online adapter node (ROS 2) from config/adapter.yaml plus overrides'),
    'launch': ('maml_robot.commands.launch',
               'start sim_node and adapter_node together (like ros2 launch maml_robot '
               'sim_adapt)'),
}


def _import(name):
    """Import the module of command ``name``; a registered module that is missing is an error."""
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:  # a real missing dependency inside the module
            raise
        raise ImportError(f'command {name!r} is registered in maml_robot/cli.py COMMANDS '
                          f'but its module {module_name} does not exist; add the module '
                          f'or remove the entry') from err


def _available(names=None):
    """Import the modules of ``names`` (default: every registered command), never skipping one."""
    return {name: _import(name) for name in (COMMANDS if names is None else names)}


def build_parser(names=None):
    """
    Return the argument parser: one sub-parser per command, with its flags for ``names``.

    ``names`` (default: every command) are the commands whose modules are imported for their
    flags; the others are listed with their help only, enough for ``maml-robot --help``.
    """
    modules = _available(names)
    parser = argparse.ArgumentParser(
        prog='maml-robot',
        description='Meta-train, evaluate and deploy robot policies that adapt to new dynamics.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, (_, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        if name in modules:
            modules[name].add_arguments(p)
            p.set_defaults(_run=modules[name].run)
    return parser


def command_of(argv) -> list:
    """Return ``[name]`` of the command ``argv`` runs (its first non-option word), else []."""
    word = next((a for a in argv if not a.startswith('-')), None)
    return [word] if word in COMMANDS else []


def main(argv=None):
    """Run ``maml-robot``; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt as err:
        signum = getattr(err, 'signum', None)   # a stop signal that took Ctrl-C's path
        if signum is not None:
            print(f'maml-robot: stopped by {err}', file=sys.stderr)
            return 128 + int(signum)
        print('maml-robot: interrupted', file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as err:
        print(f'maml-robot {args.command}: error: {err}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
