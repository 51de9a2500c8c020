"""Issue 18.11: scenario sizes have upper bounds; an undecodable YAML names its file."""

from maml_robot.scenario import (load_scenario, MAX_EPISODE_STEPS, MAX_SPLIT_SIZE,
                                 resolve, ScenarioError)
import pytest
import yaml


def write_reacher(tmp_path, change):
    """Write the shipped reacher scenario with ``change(data)`` applied; return the path."""
    data = yaml.safe_load(resolve('reacher').read_text())
    data['urdf'] = 'reacher.urdf'          # found in the package urdf/
    change(data)
    path = tmp_path / 'edited.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def test_bounds_are_generous_for_the_shipped_scenarios():
    for name in ('reacher', 'cheetah', 'quadruped', 'kuka_reach', 'a1_walk'):
        scenario = load_scenario(name)
        assert scenario.episode_steps <= MAX_EPISODE_STEPS


@pytest.mark.parametrize('steps', [10 ** 12, MAX_EPISODE_STEPS + 1])
def test_huge_episode_steps_are_refused_naming_the_key(tmp_path, steps):
    path = write_reacher(tmp_path, lambda d: d.update(episode_steps=steps))
    with pytest.raises(ScenarioError, match=f'episode_steps: expected an integer <= '
                                            f'{MAX_EPISODE_STEPS}') as err:
        load_scenario(path)
    assert str(path) in str(err.value)


def test_episode_steps_at_the_bound_are_accepted(tmp_path):
    path = write_reacher(tmp_path, lambda d: d.update(episode_steps=MAX_EPISODE_STEPS))
    assert load_scenario(path).episode_steps == MAX_EPISODE_STEPS


@pytest.mark.parametrize('split', ['test', 'ood'])
def test_huge_split_size_is_refused_naming_the_key(tmp_path, split):
    def change(data):
        data['dynamics']['splits'][split]['size'] = 10 ** 9
    path = write_reacher(tmp_path, change)
    with pytest.raises(ScenarioError, match=f'dynamics.splits.{split}.size: expected an '
                                            f'integer <= {MAX_SPLIT_SIZE}'):
        load_scenario(path)


def test_binary_yaml_names_the_file(tmp_path):
    path = tmp_path / 'binary.yaml'
    path.write_bytes(b'name: reacher\n\xff\xfe\x00\x81garbage\x00\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert str(path) in message and 'UTF-8' in message
