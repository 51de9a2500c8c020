"""The ``maml-robot`` command: one entry point, one module per sub-command."""

import argparse
import importlib
import sys

# name -> module under maml_robot.commands. Each module defines
#   HELP: str, add_arguments(parser: argparse.ArgumentParser) -> None, run(args) -> int
COMMANDS = {
    'showcase': 'maml_robot.commands.showcase',
    'train': 'maml_robot.commands.train',
    'eval': 'maml_robot.commands.evaluate',
    'baseline': 'maml_robot.commands.baseline',
    'demo': 'maml_robot.commands.demo',
    'sim': 'maml_robot.commands.sim',
    'adapt': 'maml_robot.commands.adapt',
    'launch': 'maml_robot.commands.launch',
}


def _available():
    """Import every registered command module; a missing one is an error, never skipped."""
    found = {}
    for name, module_name in COMMANDS.items():
        try:
            found[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:  # a real missing dependency inside the module
                raise
            raise ImportError(f'command {name!r} is registered in maml_robot/cli.py COMMANDS '
                              f'but its module {module_name} does not exist; add the module '
                              f'or remove the entry') from err
    return found


def build_parser(modules=None):
    """Return the argument parser with one sub-parser per available command."""
    modules = _available() if modules is None else modules
    parser = argparse.ArgumentParser(
        prog='maml-robot',
        description='Meta-train, evaluate and deploy robot policies that adapt to new dynamics.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, module in modules.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Run ``maml-robot``; returns the process exit code."""
    parser = build_parser()
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
