"""A checkpoint refused on a scenario whose control is not the one it was trained with."""

import argparse
from pathlib import Path

from maml_robot import cli, online
from maml_robot.checkpoint import load_checkpoint, save_checkpoint
from maml_robot.commands.launch import sim_scenario
from maml_robot.scenario import (build_scenario, checkpoint_reference, ControlMismatch,
                                 load_scenario, write_scenario_yaml)
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
IT952 = REPO / 'docs' / 'results' / 'quadruped-it952.safetensors'
"""The torque-mode quadruped meta-policy of docs/SCENARIOS.md (trained before position mode)."""
MODE = 'control.mode: torque in training, position here'


def _quadruped(tmp_path, control, name='quadruped'):
    """Return the shipped quadruped with another control section, written beside its YAML."""
    data = yaml.safe_load(load_scenario('quadruped').path.read_text())
    data['name'], data['control'] = name, control
    path = tmp_path / f'{name}.yaml'
    path.write_text(yaml.safe_dump(data))
    return build_scenario(data, path)


def _checkpoint(tmp_path, scenario):
    path = tmp_path / f'{scenario.name}-{scenario.control_mode}.safetensors'
    save_checkpoint(path, online.fresh_checkpoint(scenario, seed=0))
    return path


@pytest.fixture
def torque_checkpoint(tmp_path):
    """Return a fresh quadruped policy trained (as far as its file says) in torque mode."""
    return _checkpoint(tmp_path, _quadruped(tmp_path, {'mode': 'torque', 'rate_hz': 20}))


def test_a_torque_checkpoint_of_the_shipped_quadruped_is_refused_everywhere(
        torque_checkpoint, tmp_path, capsys):
    ckpt = load_checkpoint(torque_checkpoint)
    with pytest.raises(ControlMismatch) as info:
        checkpoint_reference(ckpt.scenario_name, ckpt.scenario)
    text = str(info.value)
    for words in (MODE, 'control.action_scale: 15 (every joint) in training, 0.5',
                  'efforts read as position targets', 'retrain on this scenario',
                  'write_scenario_yaml'):
        assert words in text, text
    assert 'control.kp' not in text    # the gains of another mode are no difference
    # eval and showcase stop before any rollout (showcase before its table's header)
    assert cli.main(['eval', '--checkpoint', str(torque_checkpoint), '--tasks', '1',
                     '--adapt-steps', '0', '--rollouts', '1', '--workers', '1']) == 2
    err = capsys.readouterr().err
    assert err.startswith('maml-robot eval: error: ') and MODE in err, err
    assert cli.main(['showcase', '--scenario', 'quadruped', '--policy', str(torque_checkpoint),
                     '--summary']) == 2
    out, err = capsys.readouterr()
    assert MODE in err and out == '', (out, err)
    # launch (the sim would run position mode) and the adapter node's loading
    with pytest.raises(ControlMismatch, match=MODE):
        sim_scenario(argparse.Namespace(checkpoint=str(torque_checkpoint), scenario=None),
                     tmp_path)
    with pytest.raises(ControlMismatch, match=MODE):
        online.load_adapter(torque_checkpoint, online.OnlineConfig(), log=lambda msg: None)


def test_the_scenario_a_checkpoint_carries_runs_it(torque_checkpoint, tmp_path):
    # what the error advises: the snapshot, written to a YAML, as --scenario
    ckpt = load_checkpoint(torque_checkpoint)
    path = write_scenario_yaml(load_scenario(ckpt.scenario), tmp_path / 'as_trained.yaml')
    assert checkpoint_reference(ckpt.scenario_name, ckpt.scenario, str(path)) == str(path)
    assert load_scenario(str(path)).control_mode == 'torque'
    # and a checkpoint of the current scenario loads by name, as before
    current = load_checkpoint(_checkpoint(tmp_path, load_scenario('quadruped')))
    assert checkpoint_reference(current.scenario_name, current.scenario) == 'quadruped'
    assert online.scenario_of(current).control_mode == 'position'


def test_the_same_mode_with_other_gains_is_refused_naming_them(tmp_path):
    shipped = load_scenario('quadruped').source['control']
    softer = _quadruped(tmp_path, {**shipped, 'kp': 10.0})
    ckpt = load_checkpoint(_checkpoint(tmp_path, softer))
    with pytest.raises(ControlMismatch) as info:
        checkpoint_reference(ckpt.scenario_name, ckpt.scenario)
    text = str(info.value)
    assert 'control.kp: 10 (every joint) in training, 20 (every joint) here' in text, text
    assert 'control.mode' not in text and 'read as' not in text, text


def test_a_users_checkpoint_runs_on_its_snapshot_and_refuses_another_control(tmp_path):
    mine = _quadruped(tmp_path, {'mode': 'torque', 'rate_hz': 20}, name='my_walker')
    ckpt = load_checkpoint(_checkpoint(tmp_path, mine))
    assert checkpoint_reference(ckpt.scenario_name, ckpt.scenario) is ckpt.scenario
    with pytest.raises(ControlMismatch) as info:
        checkpoint_reference(ckpt.scenario_name, ckpt.scenario, 'quadruped')
    assert MODE in str(info.value) and 'leave out --scenario' in str(info.value)


def test_the_torque_mode_it952_file_is_refused_by_the_position_mode_quadruped():
    # docs/SCENARIOS.md says so of the file it keeps
    ckpt = load_checkpoint(IT952)
    assert ckpt.scenario['source']['control']['mode'] == 'torque'
    with pytest.raises(ControlMismatch, match=MODE):
        online.scenario_of(ckpt)
