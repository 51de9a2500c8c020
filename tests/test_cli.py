"""The ``maml-robot`` command registry: every registered sub-command exists and is listed."""

from maml_robot import cli
import pytest


def test_every_registered_command_module_exists_and_has_its_interface():
    modules = cli._available()
    assert set(modules) == set(cli.COMMANDS)
    for name, module in modules.items():
        assert isinstance(module.HELP, str) and module.HELP, name
        assert callable(module.add_arguments) and callable(module.run), name
    help_text = cli.build_parser().format_help()
    assert all(name in help_text for name in cli.COMMANDS)


def test_a_registered_command_without_a_module_is_an_error(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, 'bench', 'maml_robot.commands.bench')
    with pytest.raises(ImportError, match="'bench' is registered .* maml_robot.commands.bench"):
        cli._available()
    with pytest.raises(ImportError, match='does not exist'):
        cli.main(['train', '--help'])
