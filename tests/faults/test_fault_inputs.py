"""Issue 18.2, 18.4, 18.7: checkpoints with altered limits or dtypes, implausible joint states."""

import dataclasses
import json
import time

from fault_nodes import fresh_checkpoint, InProcessAdapter
from maml_robot import online
from maml_robot.checkpoint import _metadata, CheckpointError, load_checkpoint, METADATA_KEY
from maml_robot.checkpoint import save_checkpoint
from maml_robot.online.inputs import check_joint_positions, position_bounds
from maml_robot.scenario import build_scenario, load_scenario
import numpy as np
import pytest
import safetensors.torch
import torch
import yaml


def write_unchecked(path, ckpt):
    """Write a checkpoint as save_checkpoint does, but without validating it (a forged file)."""
    tensors = {f'params.{k}': v for k, v in ckpt.params.items()}
    tensors['obs_mean'], tensors['obs_std'] = ckpt.obs_mean, ckpt.obs_std
    meta = json.dumps(_metadata(ckpt), sort_keys=True)
    path.write_bytes(safetensors.torch.save(
        {k: v.contiguous() for k, v in tensors.items()},
        metadata={'format': 'pt', METADATA_KEY: meta}))
    return path


def base():
    return online.fresh_checkpoint(load_scenario('reacher'), seed=0)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float16, torch.int64, torch.bfloat16])
def test_checkpoint_of_another_dtype_is_refused_at_load(tmp_path, dtype):
    ckpt = base()
    params = {k: v.to(dtype) for k, v in ckpt.params.items()}
    path = write_unchecked(tmp_path / 'c.safetensors', dataclasses.replace(ckpt, params=params))
    with pytest.raises(CheckpointError, match=f'dtype {dtype}.*float32'):
        load_checkpoint(path)


@pytest.mark.parametrize('change, match', [
    ({'action_scale': (1e30, 1e30)}, 'action_scale'),
    ({'action_scale': (0.1, 0.2)}, 'action_scale'),
    ({'control_period': 1e-9}, 'control_period'),
    ({'control_period': 0.05}, 'control_period')])
def test_checkpoint_limits_must_match_its_scenario(tmp_path, change, match):
    path = fresh_checkpoint(tmp_path / 'c.safetensors', **change)
    with pytest.raises(ValueError, match=f'checkpoint {match} .* differs'):
        online.load_adapter(path, online.OnlineConfig())


def test_adapter_uses_the_scenario_limits(tmp_path):
    path = fresh_checkpoint(tmp_path / 'c.safetensors', action_scale=(0.10001, 0.1))
    adapter = online.load_adapter(path, online.OnlineConfig())
    np.testing.assert_array_equal(adapter.spec.action_scale, [0.1, 0.1])
    assert adapter.spec.control_period == load_scenario('reacher').control_period


def test_joint_positions_beyond_limits_are_refused():
    bounds = position_bounds([[-1.0, 1.0], [-np.inf, np.inf]])
    check_joint_positions([1.9, 5e3], ('a', 'b'), bounds)
    check_joint_positions([np.nan, 0.0], ('a', 'b'), bounds)   # held as a bad observation
    with pytest.raises(ValueError, match=r"joint 'a' position 1e\+30 is outside"):
        check_joint_positions([1e30, 0.0], ('a', 'b'), bounds)
    with pytest.raises(ValueError, match="joint 'b' position -100000 is outside"):
        check_joint_positions([0.0, -1e5], ('a', 'b'), bounds)


@pytest.mark.parametrize('kw', [
    {'pos': (1e30, -0.4)},
    {'pos': (0.3, -50.0)},
    {'vel': (1000.0, 0.2)},      # 50 x the reacher's 20 rad/s URDF velocity limit
    {'vel': (0.1, -1e30)},
    {'names': ('elbow_joint', 'shoulder_joint', 'elbow_joint'), 'pos': (0.3, -0.4, 2.0),
     'vel': (0.1, 0.2, 0.0)}])
def test_node_holds_on_implausible_joint_states(tmp_path, kw):
    adapter = InProcessAdapter(fresh_checkpoint(tmp_path / 'c.safetensors'),
                               control_rate_hz=25.0)
    try:
        adapter.start()
        for i in range(20):
            adapter.clock[0] += 0.04
            adapter.send(100.0 + 0.04 * i)
        assert any(any(c) for c in adapter.commands), 'no policy command from a sane state'
        count = len(adapter.commands)
        for i in range(20, 40):
            adapter.clock[0] += 0.04
            adapter.send(100.0 + 0.04 * i, **kw)
        held = adapter.commands[count:]
        assert held and all(not any(c) for c in held), f'commands {held} from {kw}'
        error = adapter.node.last_input_error
        assert error.startswith('bad joint_states')
        assert any(word in error for word in ('outside', 'times', 'beyond the plausible speed'))
    finally:
        adapter.close()


def test_a_velocity_fault_is_logged_at_once_then_throttled(tmp_path, capfd):
    adapter = InProcessAdapter(fresh_checkpoint(tmp_path / 'c.safetensors'),
                               control_rate_hz=25.0)
    try:
        adapter.start()
        capfd.readouterr()
        started = time.monotonic()
        for i in range(40):
            adapter.clock[0] += 0.04
            adapter.send(100.0 + 0.04 * i, vel=(0.1, 500.0 + i))
        elapsed = time.monotonic() - started
        lines = [line for line in capfd.readouterr().err.splitlines()
                 if 'bad joint_states' in line]
        assert adapter.commands and all(not any(c) for c in adapter.commands)
        assert 1 <= len(lines) <= 1 + int(elapsed) + 1, lines
        assert "joint 'shoulder_joint' velocity 500 is beyond the plausible speed 201" in lines[0]
    finally:
        adapter.close()


def test_a_gravity_hold_publishes_nothing_before_the_first_pose(tmp_path):
    # zero effort is all a gravity hold could send without a pose, and that drops the arm
    data = yaml.safe_load(load_scenario('kuka_reach').path.read_text())
    data['name'] = 'kuka_torque_hold'
    data['control'] = {'mode': 'torque', 'rate_hz': 25, 'hold': 'gravity'}
    sc = build_scenario(data, tmp_path / 'kuka_torque_hold.yaml')
    (tmp_path / 'kuka_torque_hold.yaml').write_text(yaml.safe_dump(data))
    checkpoint = tmp_path / 'kuka_torque.safetensors'
    save_checkpoint(checkpoint, online.fresh_checkpoint(sc, seed=0))
    # a ramp-in that never ends: every command is the hold (the policy never acts)
    adapter = InProcessAdapter(checkpoint, control_rate_hz=25.0, ramp_in_steps=100000)
    try:
        adapter.start()
        assert adapter.node.adapter is not None
        for _ in range(5):
            adapter.clock[0] += 0.04
            adapter.node._control_step()         # the timer's tick, no joint_states yet
        assert adapter.commands == [], adapter.commands
        pose = [0.0, 0.6, 0.0, -1.2, 0.0, 0.6, 0.0]
        adapter.send(1000.0, names=sc.joint_names, pos=pose, vel=[0.0] * 7)
        assert adapter.commands, 'no hold after the first joint_states'
        np.testing.assert_allclose(adapter.commands[-1], sc.actuation.gravity.torques(pose),
                                   atol=1e-9)
    finally:
        adapter.close()
