"""Robots from a package: pybullet_data:// and package:// URDFs, and the URDF content hash."""

import copy
from pathlib import Path
import shutil

from maml_robot.scenario import build_scenario, load_scenario, Scenario, ScenarioError
import pybullet_data
import pytest
import yaml


def _reacher_source():
    return yaml.safe_load(Path(load_scenario('reacher').path).read_text())


def test_pybullet_data_urdf_resolves_inside_the_wheel(tmp_path):
    data = _reacher_source()
    data['urdf'] = 'pybullet_data://kuka_iiwa/model.urdf'
    with pytest.raises(ScenarioError, match=r'joints\[0\].*lbr_iiwa_joint_1'):
        build_scenario(data, tmp_path / 'kuka.yaml')   # resolved: the KUKA's joints are named
    data['urdf'] = 'pybullet_data://kuka_iiwa/no_such.urdf'
    with pytest.raises(ScenarioError, match='urdf: expected an existing URDF file.*no_such'):
        build_scenario(data, tmp_path / 'kuka.yaml')


def test_package_urdf_uses_the_search_path(tmp_path, monkeypatch):
    pkg = tmp_path / 'pkgs' / 'my_robot' / 'urdf'
    pkg.mkdir(parents=True)
    shutil.copy(load_scenario('reacher').urdf_path, pkg / 'arm.urdf')
    data = _reacher_source()
    data['urdf'] = 'package://my_robot/urdf/arm.urdf'
    with pytest.raises(ScenarioError, match='urdf: expected an existing URDF file'):
        build_scenario(data, tmp_path / 's.yaml')
    monkeypatch.setenv('MAML_ROBOT_PACKAGE_PATH', str(tmp_path / 'pkgs'))
    sc = build_scenario(data, tmp_path / 's.yaml')
    assert sc.urdf_path == (pkg / 'arm.urdf').resolve()
    data['urdf'] = 'package://my_robot'
    with pytest.raises(ScenarioError, match='package://PKG/PATH'):
        build_scenario(data, tmp_path / 's.yaml')


def test_snapshot_resolves_by_uri_when_the_path_is_gone(tmp_path):
    data = _reacher_source()
    data['urdf'] = 'pybullet_data://kuka_iiwa/model.urdf'
    data['joints'] = ['lbr_iiwa_joint_1', 'lbr_iiwa_joint_2']
    data['initial_state'] = {}
    data['base'] = {'link': 'lbr_iiwa_link_0', 'fixed': True}
    data.pop('kinematics'), data.pop('goal')
    data['observation'] = ['joint_position', 'joint_velocity']
    data['reward'] = {'control': 1.0}
    data['dynamics']['payload_link'] = 'lbr_iiwa_link_7'
    del data['dynamics']['splits']['ood']['ranges']['dead_joint']
    sc = build_scenario(data, tmp_path / 'kuka.yaml')
    snap = copy.deepcopy(sc.to_dict())
    snap['urdf_path'] = '/nonexistent/training/machine/model.urdf'
    again = Scenario.from_dict(snap)
    assert again.urdf_path == Path(pybullet_data.getDataPath(), 'kuka_iiwa/model.urdf').resolve()


def test_snapshot_refuses_a_urdf_with_other_content(tmp_path):
    urdf = tmp_path / 'reacher.urdf'
    shutil.copy(load_scenario('reacher').urdf_path, urdf)
    data = _reacher_source()
    data['urdf'] = str(urdf)
    snap = build_scenario(data, tmp_path / 'r.yaml').to_dict()
    assert Scenario.from_dict(snap).urdf_path == urdf.resolve()
    urdf.write_text(urdf.read_text().replace('<robot', '<!-- edited -->\n<robot', 1))
    with pytest.raises(ScenarioError, match='sha256.*other content'):
        Scenario.from_dict(snap)


def _user_a1_checkpoint(tmp_path):
    """Save a fresh checkpoint of a user's A1 scenario, then delete the scenario file."""
    from maml_robot import online
    from maml_robot.checkpoint import save_checkpoint
    data = yaml.safe_load(Path(load_scenario('a1_walk').path).read_text())
    data['name'] = 'my_a1'
    data['dynamics']['splits']['test']['size'] = 2
    yaml_path = tmp_path / 'robots' / 'my_a1.yaml'
    yaml_path.parent.mkdir()
    yaml_path.write_text(yaml.safe_dump(data))
    ckpt = tmp_path / 'my_a1.safetensors'
    save_checkpoint(ckpt, online.fresh_checkpoint(load_scenario(str(yaml_path)), seed=0))
    shutil.rmtree(yaml_path.parent)
    return ckpt


def test_eval_needs_only_the_checkpoint_from_any_directory(tmp_path):
    import json
    import os
    import subprocess
    import sys
    ckpt = _user_a1_checkpoint(tmp_path)
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    out = subprocess.run(
        [sys.executable, '-m', 'maml_robot.cli', 'eval', '--checkpoint', str(ckpt),
         '--split', 'test', '--adapt-steps', '0', '--rollouts', '2', '--workers', '1',
         '--json', 'r.json'], cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parent.parent)})
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((elsewhere / 'r.json').read_text())
    assert report['meta']['scenario'] == 'my_a1' and report['meta']['tasks'] == 2


def test_launch_gives_the_sim_the_checkpoints_own_robot(tmp_path):
    import argparse
    from maml_robot.commands.launch import COMMAND_TOPICS, sim_scenario
    ckpt = _user_a1_checkpoint(tmp_path)
    args = argparse.Namespace(checkpoint=str(ckpt), scenario=None)
    reference, mode = sim_scenario(args, tmp_path)
    assert mode == 'position'
    assert COMMAND_TOPICS[mode] == '/forward_position_controller/commands'
    sc = load_scenario(reference)      # a file the sim node reads, with the resolved URDF
    assert sc.name == 'my_a1' and sc.act_dim == 12
    assert sc.urdf_path == Path(pybullet_data.getDataPath(), 'a1/a1.urdf').resolve()
    args = argparse.Namespace(checkpoint='reacher', scenario=None)
    assert sim_scenario(args, tmp_path) == ('reacher', 'torque')


def test_train_flags_and_resume_from_another_directory(tmp_path):
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    mine = tmp_path / 'project'
    mine.mkdir()
    data = yaml.safe_load(Path(load_scenario('reacher').path).read_text())
    data['urdf'] = str(load_scenario('reacher').urdf_path)
    (mine / 'arm.yaml').write_text(yaml.safe_dump(data))
    env = {**os.environ, 'PYTHONPATH': str(root)}

    def train(cwd, *extra):
        return subprocess.run(
            [sys.executable, '-m', 'maml_robot.cli', 'train', '--out', str(tmp_path / 'run'),
             '--workers', '1', '--no-progress', *extra], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=300)
    first = train(mine, '--scenario', 'arm.yaml', '--iterations', '1', '--tasks', '2',
                  '--rollouts', '2', '--horizon', '10')
    assert first.returncode == 0, first.stderr[-2000:]
    assert 'no training recipe for scenario' in first.stderr
    saved = yaml.safe_load((tmp_path / 'run' / 'config.yaml').read_text())
    assert saved['scenario'] == str(mine / 'arm.yaml')      # stored absolute
    assert (saved['tasks_per_iteration'], saved['rollouts_per_task'], saved['horizon']) == \
        (2, 2, 10)
    again = train(tmp_path, '--resume', '--iterations', '2')  # from another directory
    assert again.returncode == 0, again.stderr[-2000:]
    assert 'trained 2 iterations' in again.stdout
