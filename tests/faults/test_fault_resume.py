"""Issue 18.9: ``--resume`` checks the run folder against what the run recorded."""

import shutil

from maml_robot import cli
import pytest
import yaml

TINY = ['--scenario', 'reacher', '--iterations', '1', '--tasks', '2', '--rollouts', '2',
        '--horizon', '10', '--workers', '1', '--no-progress']


def train(out, *extra):
    """Run ``maml-robot train`` in process; return its exit code."""
    return cli.main(['train', '--out', str(out)] + TINY + list(extra))


def resume(out):
    return cli.main(['train', '--out', str(out), '--resume', '--iterations', '2',
                     '--workers', '1', '--no-progress'])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Two finished one-iteration runs with the same settings (A and B)."""
    base = tmp_path_factory.mktemp('runs')
    for name in ('a', 'b'):
        assert train(base / name) == 0
    return base / 'a', base / 'b'


@pytest.fixture
def run(runs, tmp_path):
    """Return a copy of run A to tamper with."""
    return shutil.copytree(runs[0], tmp_path / 'run')


def edit_config(run, **changes):
    path = run / 'config.yaml'
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.slow
def test_an_untouched_run_resumes(run):
    assert resume(run) == 0


@pytest.mark.slow
@pytest.mark.parametrize('key, value', [('seed', 12345), ('outer_lr', 0.5)])
def test_an_edited_config_is_refused_naming_the_key(run, capsys, key, value):
    edit_config(run, **{key: value})
    assert resume(run) == 2
    err = capsys.readouterr().err
    assert key in err and 'config.yaml' in err, err


@pytest.mark.slow
def test_a_resume_file_of_another_run_is_refused(runs, run, capsys):
    shutil.copy(runs[1] / 'resume.safetensors', run / 'resume.safetensors')
    assert resume(run) == 2
    err = capsys.readouterr().err
    assert 'resume.safetensors' in err and 'another run' in err, err


@pytest.mark.slow
@pytest.mark.parametrize('where', ['tensor data', 'header'])
def test_a_damaged_resume_file_says_so(run, capsys, where):
    path = run / 'resume.safetensors'
    data = bytearray(path.read_bytes())
    spots = [len(data) - 5, len(data) - 200] if where == 'tensor data' else [40, 60]
    for i in spots:
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    assert resume(run) == 2
    err = capsys.readouterr().err
    assert str(path) in err and 'damaged' in err, err
    assert 'learning rate' not in err
