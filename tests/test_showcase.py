"""The ``maml-robot showcase`` command: a table of tasks and returns, and the summary."""

from maml_robot import cli
from maml_robot.commands import showcase


def test_showcase_table(capsys):
    assert cli.main(['showcase', '--scenario', 'reacher', 'cheetah', '--tasks', '2']) == 0
    out = capsys.readouterr().out
    assert '== reacher' in out and '== cheetah' in out
    for split in ('train', 'test', 'ood'):
        assert sum(line.startswith(split) for line in out.splitlines()) == 4  # 2 per robot
    assert 'elbow:' in out and 'bthigh:' in out  # per-joint changes are listed


def test_showcase_summary_shows_the_gap():
    lines = []
    numbers = showcase.summarize('reacher', 0, out=lines.append)
    assert set(numbers) == {'test', 'ood'}
    test = numbers['test']
    assert len(test['nominal']) == 40
    assert test['oracle'].mean() > test['nominal'].mean() + 2.0
    assert any(line.startswith('test') for line in lines)


def test_showcase_rejects_bad_arguments(capsys):
    assert cli.main(['showcase', '--tasks', '0']) == 2
    assert '--tasks must be >= 1' in capsys.readouterr().err
