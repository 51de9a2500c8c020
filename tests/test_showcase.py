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


def test_policy_controller_oracle_undoes_motor_and_sensor_faults():
    import numpy as np
    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.dynamics import Task
    from maml_robot.envs.controllers import make_controller
    from maml_robot.online import resolve_checkpoint
    from maml_robot.scenario import load_scenario
    import pytest
    sc = load_scenario('cheetah')
    ckpt = load_checkpoint(resolve_checkpoint('cheetah'))
    j = sc.act_dim
    offset = tuple(0.1 * (i + 1) for i in range(j))
    task = Task(motor_strength=(0.5,) * j, motor_direction=(-1,) + (1,) * (j - 1),
                calibration_offset=offset, dead_joints=(sc.joint_names[1],))
    nominal, oracle = make_controller(sc, checkpoint=ckpt), make_controller(sc, task, ckpt)
    obs = np.random.default_rng(0).normal(size=sc.obs_dim).astype(np.float32) * 0.1
    seen = obs.copy()                     # what the faulty sensors report for the same state
    seen[oracle.pos] += np.array(offset, dtype=np.float32)
    want = nominal(obs)                   # the nominal command for the true state
    got = oracle(seen)
    alive = [i for i in range(j) if i != 1]
    # the motors then produce got * direction * strength: the nominal command, where it fits
    produced = got * np.array(task.joint_array('motor_direction', j)) * 0.5
    fits = [i for i in alive if abs(want[i]) <= 0.5]
    assert fits and np.allclose(produced[fits], want[fits], atol=1e-5)
    assert got[1] == 0.0                  # a dead joint gets no command
    with pytest.raises(ValueError, match='checkpoint observes'):
        make_controller(load_scenario('reacher'), checkpoint=ckpt)


def test_policy_controller_oracle_in_position_mode_shifts_targets_and_flips_no_sign():
    import numpy as np
    from maml_robot.dynamics import Task
    from maml_robot.envs.controllers import make_controller
    from maml_robot.online import fresh_checkpoint
    from maml_robot.scenario import load_scenario
    sc = load_scenario('quadruped')            # position mode: the PD tracks the encoder
    assert sc.control_mode == 'position'
    ckpt = fresh_checkpoint(sc, seed=0)
    j = sc.act_dim
    offset = np.array([0.02 * (i + 1) for i in range(j)])
    task = Task(motor_strength=(0.5,) * j, motor_direction=(-1,) + (1,) * (j - 1),
                calibration_offset=tuple(offset))
    nominal, oracle = make_controller(sc, checkpoint=ckpt), make_controller(sc, task, ckpt)
    obs = np.random.default_rng(0).normal(size=sc.obs_dim).astype(np.float32) * 0.1
    seen = obs.copy()                     # what the offset encoders report for the same state
    seen[oracle.pos] += offset.astype(np.float32)
    want, got = nominal(obs), oracle(seen)
    # the target of got is the nominal target plus the offset: the TRUE pose the policy wants;
    # a reversed, weak motor is not undone by negating or scaling a target
    target = sc.actuation.default_position + sc.actuation.action_scale * got
    wanted = sc.actuation.default_position + sc.actuation.action_scale * want
    inside = np.abs(want + offset / sc.actuation.action_scale) < 1.0
    assert inside.all() and np.allclose(target[inside], wanted[inside] + offset[inside],
                                        atol=1e-5)
