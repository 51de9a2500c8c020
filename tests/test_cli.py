"""The ``maml-robot`` command registry: every registered sub-command exists and is listed."""

from maml_robot import cli
import pytest


def test_every_registered_command_module_exists_and_has_its_interface():
    modules = cli._available()
    assert set(modules) == set(cli.COMMANDS)
    for name, module in modules.items():
        module_name, text = cli.COMMANDS[name]
        assert module.__name__ == module_name and isinstance(text, str) and text, name
        assert callable(module.add_arguments) and callable(module.run), name
        assert not hasattr(module, 'HELP'), f'{name}: its help is in cli.COMMANDS'
    help_text = cli.build_parser().format_help()
    assert all(name in help_text for name in cli.COMMANDS)


def test_the_command_list_imports_no_command_and_a_command_only_its_own(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(['--help'])
    assert done.value.code == 0
    listing = ' '.join(capsys.readouterr().out.split())
    for name, (_, text) in cli.COMMANDS.items():
        assert name in listing and ' '.join(text.split())[:40] in listing, name
    assert cli.command_of(['--help']) == [] and cli.command_of(['nope', '-h']) == []
    assert cli.command_of(['eval', '--checkpoint', 'x']) == ['eval']
    parser = cli.build_parser(['sim'])
    assert parser.parse_args(['sim', '--set', 'seed=1'])._run is cli._import('sim').run
    with pytest.raises(SystemExit):          # train is listed, but its flags were not added
        parser.parse_args(['train', '--iterations', '3'])


def test_a_registered_command_without_a_module_is_an_error(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, 'bench', ('maml_robot.commands.bench', 'benchmarks'))
    with pytest.raises(ImportError, match="'bench' is registered .* maml_robot.commands.bench"):
        cli._available()
    with pytest.raises(ImportError, match='does not exist'):
        cli.main(['bench', '--help'])
