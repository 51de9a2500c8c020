"""``maml-robot train`` end to end on a tiny budget: files, logs, resume equality, errors."""

import csv

from maml_robot.checkpoint import load_checkpoint
from maml_robot.cli import main
import pytest
import torch

TINY_YAML = """scenario: reacher
iterations: 2
tasks_per_iteration: 2
rollouts_per_task: 2
horizon: 10
outer_steps: 2
hidden_sizes: [16, 16]
workers: 1
device: cpu
checkpoint_every: 1
"""


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_yaml(tmp_path):
    path = tmp_path / 'tiny.yaml'
    path.write_text(TINY_YAML)
    return path


def train(out, config, *extra):
    return main(['train', '--out', str(out), '--config', str(config), '--no-progress',
                 '--threads', '1', *extra])


def test_train_end_to_end(tmp_path, tiny_yaml, capsys):
    out = tmp_path / 'run'
    assert train(out, tiny_yaml, '--seed', '3') == 0
    assert 'trained 2 iterations' in capsys.readouterr().out
    with open(out / 'progress.csv', newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    assert [r['iteration'] for r in rows] == ['0', '1']
    for key in ('pre_return', 'post_return', 'adaptation_gain', 'loss_first', 'kl_pre',
                'time_sample_pre', 'time_meta_step', 'env_steps'):
        assert key in rows[0], key
    assert int(rows[1]['env_steps']) == 2 * (2 * 2 * 2 * 10)  # 2 its x (pre + post) x B N T
    assert all(float(r['pre_return']) < 0 for r in rows)  # reacher rewards are -distance
    assert list((out / 'tensorboard').glob('events.out.tfevents.*'))
    for name in ('latest.safetensors', 'best.safetensors'):
        ckpt = load_checkpoint(out / name, expect={'scenario': 'reacher'})
        assert ckpt.policy_config.hidden_sizes == (16, 16)
        assert ckpt.training['seed'] == 3 and (ckpt.obs_std > 0).all()
    assert (out / 'resume.safetensors').is_file()
    assert 'seed: 3' in (out / 'config.yaml').read_text()  # the flag overrode the YAML


def test_two_iterations_plus_resume_equals_three(tmp_path, tiny_yaml):
    assert train(tmp_path / 'three', tiny_yaml, '--iterations', '3') == 0
    assert train(tmp_path / 'split', tiny_yaml) == 0
    assert main(['train', '--out', str(tmp_path / 'split'), '--resume', '--iterations', '3',
                 '--no-progress', '--threads', '1']) == 0
    a = load_checkpoint(tmp_path / 'three' / 'latest.safetensors')
    b = load_checkpoint(tmp_path / 'split' / 'latest.safetensors')
    assert a.training['iterations'] == b.training['iterations'] == 3
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name
    assert torch.equal(a.obs_mean, b.obs_mean) and torch.equal(a.obs_std, b.obs_std)


def test_errors_are_clear(tmp_path, tiny_yaml, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(TINY_YAML + 'clip_eps: 2.0\n')
    assert train(tmp_path / 'x', bad) == 2
    assert 'clip_eps: expected a number in (0, 1), got 2.0' in capsys.readouterr().err
    bad.write_text(TINY_YAML + 'inner_learning_rate: 0.1\n')
    assert train(tmp_path / 'x', bad) == 2
    assert "unknown key 'inner_learning_rate'" in capsys.readouterr().err
    assert main(['train', '--out', str(tmp_path / 'none'), '--resume']) == 2
    assert 'nothing to resume' in capsys.readouterr().err
    assert train(tmp_path / 'x', tiny_yaml, '--workers', '0') == 2
    assert 'workers: expected an integer >= 1' in capsys.readouterr().err


def test_sigterm_saves_the_state_like_ctrl_c(tmp_path, tiny_yaml):
    """``kill``/a scheduler's SIGTERM: the run saves its last completed iteration and exits."""
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / 'run'
    proc = subprocess.Popen(
        [sys.executable, '-m', 'maml_robot.cli', 'train', '--out', str(out), '--config',
         str(tiny_yaml), '--iterations', '100000', '--no-progress', '--threads', '1'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / 'resume.safetensors').is_file():   # written after each iteration here
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, (stdout, stderr)
    assert 'stopped by SIGTERM' in stderr and 'continue with --resume' in stdout + stderr

    def rows():
        with open(out / 'progress.csv', newline='', encoding='utf-8') as f:
            return len(list(csv.DictReader(f)))

    # the saved state is the last completed iteration (the CSV may hold one more row when the
    # signal came between logging and the snapshot; --resume trims it)
    saved = load_checkpoint(out / 'latest.safetensors').training['iterations']
    assert saved >= 1 and rows() - 1 <= saved <= rows()
    assert main(['train', '--out', str(out), '--resume', '--iterations', str(saved + 1),
                 '--no-progress', '--threads', '1']) == 0
    assert load_checkpoint(out / 'latest.safetensors').training['iterations'] == saved + 1
    assert rows() == saved + 1
