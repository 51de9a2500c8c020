"""Task values and their sampling per split (train sampled, test/ood fixed, ood outside)."""

import json

from maml_robot.dynamics import _uniform, sample_tasks, Task
from maml_robot.scenario import load_scenario, SHIPPED
import numpy as np
import pytest


@pytest.fixture(scope='module')
def reacher():
    return load_scenario('reacher')


def test_task_is_a_value():
    a = Task(mass_scale=1.2, motor_direction=(1, -1), dead_joints=('b', 'a'))
    b = Task(mass_scale=np.float64(1.2), motor_direction=[np.int64(1), -1], dead_joints=['a', 'b'])
    assert a == b and hash(a) == hash(b)
    assert a.dead_joints == ('a', 'b')
    assert len({a, b, Task()}) == 2
    again = Task.from_dict(json.loads(json.dumps(a.to_dict())))
    assert again == a
    with pytest.raises(ValueError, match='unknown Task fields'):
        Task.from_dict({'mass': 1.0})
    with pytest.raises(ValueError, match='motor_direction'):
        Task(motor_direction=(1, 0))
    with pytest.raises(ValueError, match='mass_scale'):
        Task(mass_scale=0.0)
    with pytest.raises(ValueError):
        Task(payload=-1.0)


def test_task_check_against_scenario(reacher):
    Task.nominal(reacher).check(reacher)
    Task().check(reacher)
    with pytest.raises(ValueError, match='motor_strength has 3 values'):
        Task(motor_strength=(1, 1, 1)).check(reacher)
    with pytest.raises(ValueError, match='dead joint'):
        Task(dead_joints=('wrist_joint',)).check(reacher)
    assert np.array_equal(Task().joint_array('motor_strength', 2), [1.0, 1.0])
    assert np.array_equal(Task().joint_array('calibration_offset', 2), [0.0, 0.0])
    text = Task(motor_direction=(-1, 1), dead_joints=('shoulder_joint',)).describe(reacher)
    assert 'elbow:REV' in text and 'shoulder:DEAD' in text
    assert Task().describe(reacher) == 'nominal'


@pytest.mark.parametrize('name', SHIPPED)
def test_fixed_splits_are_fixed(name):
    sc = load_scenario(name)
    for split in ('test', 'ood'):
        a = sample_tasks(sc, None, split)
        b = sample_tasks(sc, None, split, seed=123)
        assert a == b and len(a) == sc.splits[split].size >= 40
        assert sample_tasks(sc, 5, split) == a[:5]
        assert len(set(a)) == len(a)
        with pytest.raises(ValueError, match='fixed tasks'):
            sample_tasks(sc, len(a) + 1, split)


def test_train_split_is_seeded(reacher):
    a = sample_tasks(reacher, 10, 'train', seed=0)
    assert a == sample_tasks(reacher, 10, 'train', seed=0)
    assert a == sample_tasks(reacher, 10, 'train', seed=np.random.default_rng(0))
    assert not set(a) & set(sample_tasks(reacher, 10, 'train', seed=1))
    assert not set(a) & set(sample_tasks(reacher, 40, 'test'))
    with pytest.raises(ValueError, match='unknown split'):
        sample_tasks(reacher, 1, 'valid')
    with pytest.raises(ValueError, match='number'):
        sample_tasks(reacher, None, 'train')


def _inside(value, intervals):
    return any(lo - 1e-12 <= value <= hi + 1e-12 for lo, hi in intervals)


@pytest.mark.parametrize('name', SHIPPED)
def test_tasks_respect_ranges_and_ood_is_outside(name):
    sc = load_scenario(name)
    train_spec, ood_spec = sc.splits['train'], sc.splits['ood']
    train = sample_tasks(sc, 300, 'train', seed=0)
    for split, spec in (('train', train_spec), ('test', train_spec), ('ood', ood_spec)):
        tasks = train if split == 'train' else sample_tasks(sc, None, split)
        for t in tasks:
            for param, intervals in spec.ranges.items():
                values = getattr(t, param)
                for v in (values if isinstance(values, tuple) else (values,)):
                    assert _inside(v, intervals), (split, param, v)
            assert spec.latency_steps[0] <= t.latency_steps <= spec.latency_steps[1]
    # Training never kills a joint; the ood split does, and only joints never dead in training.
    assert all(not t.dead_joints for t in train)
    ood = sample_tasks(sc, None, 'ood')
    dead = {j for t in ood for j in t.dead_joints}
    assert dead and not dead & set(train_spec.dead_joints)
    # ood ranges lie outside the training ones (touching at most at the boundary).
    for param, intervals in ood_spec.ranges.items():
        if param not in train_spec.ranges:
            continue
        (tlo, thi), = train_spec.ranges[param]
        for lo, hi in intervals:
            assert hi <= tlo or lo >= thi, (param, (lo, hi), (tlo, thi))
    # Reversed motors appear at about the configured rate.
    reversed_rate = np.mean([d < 0 for t in train for d in t.motor_direction])
    assert reversed_rate == pytest.approx(train_spec.motor_reversed, abs=0.06)


def test_union_of_intervals_sampler():
    rng = np.random.default_rng(0)
    draws = _uniform(rng, ((0.0, 1.0), (3.0, 5.0)), 3000)
    assert np.all(((draws >= 0) & (draws <= 1)) | ((draws >= 3) & (draws <= 5)))
    # Weighted by length: two thirds land in the longer interval.
    assert np.mean(draws >= 3) == pytest.approx(2 / 3, abs=0.03)
    assert _uniform(rng, ((2.0, 2.0),)) == 2.0
