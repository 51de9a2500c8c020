"""Velocity mode: the command law, the sim's velocity loop at the physics rate, holds, errors."""

import dataclasses
from pathlib import Path

from maml_robot import online
from maml_robot.actuation import Actuation
from maml_robot.dynamics import Task
from maml_robot.gravity import GravityModel
from maml_robot.observation import RobotState
from maml_robot.online.node_config import NodeConfig
from maml_robot.scenario import build_scenario, load_scenario, ScenarioError
from maml_robot.sim.robot import VelocityLoop
from maml_robot.sim.world import World
from maml_robot.urdf import parse_urdf
import numpy as np
import pytest
from test_robot_limits import edit, REACHER_URDF, spec_for
import torch
import yaml

REACHER_CONTROL = {'mode': 'velocity', 'rate_hz': 25, 'action_scale': 5.0, 'kv': 0.2}
"""rad/s per unit of action; kv in N·m·s/rad (0.4 is unstable at 1 kHz on the reacher's links)."""
KUKA_KV = [120.0, 160.0, 60.0, 80.0, 12.0, 4.0, 0.4]
"""N·m·s/rad: 4 x kuka_reach's position-mode kd (6 x oscillates at 1 kHz on joints 1, 3, 5)."""


def velocity_data(name, control=None, **sim):
    """Return scenario ``name``'s data in velocity mode, started at rest (no noise)."""
    data = yaml.safe_load(Path(load_scenario(name).path).read_text())
    names = data['joints']
    data['name'] = f'{name}_velocity'
    data['control'] = control or {'mode': 'velocity', 'rate_hz': 25, 'action_scale': 1.0,
                                  'kv': dict(zip(sorted(names), KUKA_KV))}
    data['sim'].update(sim)
    data['initial_state']['joint_position_noise'] = 0.0
    data['initial_state']['joint_velocity_noise'] = 0.0
    return data


def reacher_velocity(tmp_path, **control):
    """Return the planar reacher (no gravity in its plane) in velocity mode, 1 kHz physics."""
    data = velocity_data('reacher', {**REACHER_CONTROL, **control}, timestep=0.001,
                         frame_skip=40)
    return build_scenario(data, tmp_path / 'reacher_velocity.yaml')


def run(world, action, steps):
    """Apply ``action`` for ``steps`` control steps; return the true velocities (steps, J)."""
    out = []
    for _ in range(steps):
        world.apply_action(action)
        world.step()
        out.append(world.true_state().joint_velocity)
    return np.array(out)


def test_the_velocity_law_its_limits_and_its_hold():
    act = Actuation(mode='velocity', hold='stop', action_scale=np.array([2.0, 5.0]),
                    effort_limit=np.array([1.0, 3.0]),
                    position_limits=np.array([[-1.0, 1.0], [-np.inf, np.inf]]),
                    default_position=np.zeros(2), kp=np.zeros(2), kd=np.zeros(2),
                    kv=np.array([0.5, 2.0]), velocity_limit=np.array([1.5, 10.0]))
    # qd_target = clip(action) * scale, within the URDF velocity limit
    np.testing.assert_allclose(act.command([0.5, -0.4]), [1.0, -2.0])
    np.testing.assert_allclose(act.command([3.0, -3.0]), [1.5, -5.0])
    np.testing.assert_allclose(act.clip_command([9.0, -20.0]), [1.5, -10.0])
    np.testing.assert_allclose(act.normalized(act.command([0.5, -0.4])), [0.5, -0.4])
    # the hold is zero velocity whatever was commanded or measured before
    np.testing.assert_array_equal(act.hold_command(last=[1.0, 2.0], position=[0.3, 0.1]),
                                  np.zeros(2))
    # kv (target - qd), clamped to the effort limit
    np.testing.assert_allclose(act.velocity_effort([1.0, 0.0], [0.5, 0.25]), [0.25, -0.5])
    np.testing.assert_allclose(act.velocity_effort([1.0, 0.0], [-9.0, 9.0]), [1.0, -3.0])
    again = Actuation.from_dict(act.to_dict())
    assert again.mode == 'velocity' and again.hold == 'stop'
    np.testing.assert_array_equal(again.kv, act.kv)
    np.testing.assert_array_equal(again.velocity_limit, act.velocity_limit)
    # a snapshot written before velocity mode has neither key: no loop, no velocity limit
    old = {k: v for k, v in act.to_dict().items() if k not in ('kv', 'velocity_limit')}
    old.update(mode='torque', hold='zero')
    older = Actuation.from_dict(old)
    assert not older.kv.any() and np.all(np.isinf(older.velocity_limit))
    with pytest.raises(ValueError, match="hold for velocity control must be one of \\('stop',\\)"):
        dataclasses.replace(act, hold='zero')
    with pytest.raises(ValueError, match='kv must have 2 entries'):
        dataclasses.replace(act, kv=np.ones(3))


def test_the_sims_float_velocity_loop_is_the_actuation_law(tmp_path):
    rng = np.random.default_rng(4)
    for sc in (reacher_velocity(tmp_path),
               build_scenario(velocity_data('kuka_reach'), tmp_path / 'kuka.yaml')):
        act = sc.actuation
        loop = VelocityLoop(act)
        for _ in range(20):
            action = rng.uniform(-1.2, 1.2, act.action_scale.shape)
            qd = rng.normal(0, 3, action.shape)
            target = loop.target(np.clip(action, -1, 1).tolist())
            np.testing.assert_allclose(target, act.command(action), rtol=0, atol=1e-12)
            np.testing.assert_allclose(loop.effort(target, [0.0] * len(qd), qd.tolist()),
                                       act.velocity_effort(target, qd), rtol=0, atol=1e-9)


def test_a_constant_action_reaches_its_velocity_and_the_hold_stops_the_joints(tmp_path):
    sc = reacher_velocity(tmp_path)
    assert sc.control_mode == 'velocity' and sc.actuation.hold == 'stop'
    action = np.array([0.4, -0.3])          # elbow 2 rad/s, shoulder -1.5 rad/s
    world = World(sc)
    try:
        world.reset(np.random.default_rng(0))
        qd = run(world, action, 6)
        # a P loop: the URDF's joint damping (0.003 N·m·s/rad) costs ~1.5 % of the target
        error = np.abs(qd[-3:] - action * 5.0).max()
        assert error < 0.05, qd
        qd = run(world, np.zeros(2), 3)     # the hold: zero velocity, the drive brakes
        assert np.abs(qd[-1]).max() < 0.005, qd
    finally:
        world.close()


def test_task_dynamics_act_on_the_velocity_drive(tmp_path):
    sc = reacher_velocity(tmp_path)
    action = np.array([0.4, -0.3])
    nominal = Task.nominal(sc)
    world = World(sc)

    def velocities(task, steps=6):
        world.set_task(task)
        world.reset(np.random.default_rng(0))
        return run(world, action, steps)
    try:
        base = velocities(nominal)
        # a calibration offset shifts measured positions only: the velocity loop is unaffected
        offset = velocities(dataclasses.replace(nominal, calibration_offset=(0.2, -0.1)))
        np.testing.assert_array_equal(offset, base)
        # one control step of latency: the first step still acts on the zero command
        late = velocities(dataclasses.replace(nominal, latency_steps=1))
        assert np.abs(late[0]).max() < 0.05 and np.abs(late[-1] - base[-1]).max() < 0.05
        # a weak motor tracks worse (a lower loop gain against the same damping)
        weak = velocities(dataclasses.replace(nominal, motor_strength=(0.25, 1.0)))
        assert abs(weak[-1, 0] - 2.0) > 2 * abs(base[-1, 0] - 2.0)
        # a dead joint gets no torque, whatever its loop asks
        velocities(dataclasses.replace(nominal, dead_joints=('elbow_joint',)), steps=1)
        assert world.applied_effort[0] == 0.0 and world.applied_effort[1] != 0.0
    finally:
        world.close()


def test_under_gravity_the_stop_hold_creeps_at_load_over_kv(tmp_path):
    """Zero velocity is not a pose: a P velocity loop lets a loaded joint creep."""
    sc = build_scenario(velocity_data('kuka_reach'), tmp_path / 'kuka.yaml')
    gravity = GravityModel.from_urdf(parse_urdf(sc.urdf_path), sc.joint_names,
                                     (0.0, 0.0, -9.81))
    world = World(sc)
    try:
        world.reset(np.random.default_rng(0))
        q0 = world.true_state().joint_position
        qd = run(world, np.zeros(7), 25)           # 1 s of the hold
        q1 = world.true_state().joint_position
    finally:
        world.close()
    # quasi-static: the drive's kv * (0 - qd) plus the URDF damping (0.5) carry the load
    creep = -gravity.torques(q1) / (np.array(KUKA_KV) + 0.5)
    j2 = sc.joint_names.index('lbr_iiwa_joint_2')
    assert abs(q1[j2] - q0[j2]) > 0.1, 'the shoulder should sag under its load'
    np.testing.assert_allclose(qd[-1, j2], creep[j2], rtol=0.15)


@pytest.mark.parametrize('control,key,words', [
    ({'kp': 10.0}, 'control.kp', 'set control.mode: position, or remove it; velocity mode '
     'takes control.kv'),
    ({'default_joint_position': 0.0}, 'control.default_joint_position', 'position-mode key'),
    ({'kv': None}, 'control.kv', 'velocity loop gain in N·m·s/rad'),
    ({'kv': -1.0}, 'control.kv', 'kv > 0'),
    ({'kv': {'elbow_joint': 0.0, 'shoulder_joint': 0.2}}, 'control.kv', 'kv > 0'),
    ({'hold': 'default'}, 'control.hold', "['stop'] in velocity mode"),
    ({'action_scale': 25.0}, 'control.action_scale', 'at most the URDF velocity limit'),
    ({'mode': 'position', 'kp': 1.0}, 'control.kv', 'velocity-mode key'),
    ({'mode': 'torque', 'action_scale': 0.1}, 'control.kv', 'torque mode takes no gains'),
])
def test_bad_velocity_control_sections_name_the_key(tmp_path, control, key, words):
    data = velocity_data('reacher', {**REACHER_CONTROL, **control})
    data['control'] = {k: v for k, v in data['control'].items() if v is not None}
    with pytest.raises(ScenarioError) as info:
        build_scenario(data, tmp_path / 'bad.yaml')
    assert info.value.key == key and words in str(info.value), str(info.value)


def test_the_action_scale_defaults_to_the_urdf_velocity_limit(tmp_path):
    control = {'mode': 'velocity', 'rate_hz': 25, 'kv': 0.2}
    sc = build_scenario(velocity_data('reacher', dict(control)), tmp_path / 'a.yaml')
    np.testing.assert_array_equal(sc.action_scale, [20.0, 20.0])
    np.testing.assert_array_equal(sc.actuation.velocity_limit, [20.0, 20.0])
    partial = {**control, 'action_scale': {'elbow_joint': 3.0}}
    sc = build_scenario(velocity_data('reacher', partial), tmp_path / 'b.yaml')
    np.testing.assert_array_equal(sc.action_scale, [3.0, 20.0])
    # a URDF without velocity limits needs one in the scenario
    text = REACHER_URDF.read_text().replace(' velocity="20"', '')
    (tmp_path / 'reacher.urdf').write_text(text)
    data = velocity_data('reacher', dict(control))
    data['urdf'] = str(tmp_path / 'reacher.urdf')
    with pytest.raises(ScenarioError, match='no velocity limit to default to') as info:
        build_scenario(data, tmp_path / 'c.yaml')
    assert info.value.key == 'control.action_scale'


def constant_policy(ckpt, action):
    """Return ``ckpt`` whose mean action is ``action`` (J,) whatever it observes."""
    params = dict(ckpt.params)
    params['mean.weight'] = torch.zeros_like(params['mean.weight'])
    params['mean.bias'] = torch.tensor(action, dtype=params['mean.bias'].dtype)
    return dataclasses.replace(ckpt, params=params)


def test_the_adapter_ramps_clamps_and_holds_zero_velocity(tmp_path):
    sc = reacher_velocity(tmp_path)
    ckpt = constant_policy(online.fresh_checkpoint(sc), [0.8, -1.5])
    spec = online.spec_from_checkpoint(ckpt, sc)
    config = online.OnlineConfig(synchronous=True, adapt=False, ramp_in_steps=1,
                                 fade_in_steps=1)
    adapter = online.OnlineAdapter(ckpt.make_policy(), ckpt.params, spec, config,
                                   log=lambda msg: None)
    state = RobotState(np.zeros(2), np.zeros(2), np.array([0.1, 0.0, 0.03]))
    ramp = [adapter.act(state, 0.0) for _ in range(2)]
    assert [c.mode for c in ramp] == [online.MODE_RAMP, online.MODE_FADE]
    np.testing.assert_allclose(ramp[0].effort, [0.0, 0.0])             # the hold
    np.testing.assert_allclose(ramp[1].effort, [2.0, -2.5], atol=1e-6)  # half way
    cmd = adapter.act(state, 0.0)
    assert cmd.mode == online.MODE_POLICY
    np.testing.assert_allclose(cmd.effort, [4.0, -5.0], atol=1e-6)      # action clipped to -1
    assert adapter.act(state, 5.0).mode == online.MODE_STALE
    np.testing.assert_array_equal(adapter.act(state, 5.0).effort, np.zeros(2))
    adapter.set_estop(True)
    cmd = adapter.act(state, 0.0)
    assert cmd.mode == online.MODE_ESTOP and not cmd.effort.any()
    # a robot whose URDF allows 0.5 % less speed: commands stay within its limit
    text = edit(REACHER_URDF.read_text(), 'elbow_joint', 'velocity', '19.9')
    limited = spec_for(sc, text)
    np.testing.assert_array_equal(limited.actuation.velocity_limit, [19.9, 20.0])
    full = dataclasses.replace(limited.actuation, action_scale=np.array([20.0, 20.0]))
    np.testing.assert_array_equal(full.command([1.0, -1.0]), [19.9, -20.0])


def test_a_velocity_checkpoint_refuses_trajectory_commands_and_launches_on_its_topic(tmp_path):
    import argparse
    from maml_robot.checkpoint import save_checkpoint
    from maml_robot.commands.launch import COMMAND_TOPICS, sim_scenario
    from maml_robot.envs.controllers import controller_kind
    sc = reacher_velocity(tmp_path)
    save_checkpoint(tmp_path / 'v.safetensors', online.fresh_checkpoint(sc))
    args = argparse.Namespace(checkpoint=str(tmp_path / 'v.safetensors'), scenario=None)
    reference, mode = sim_scenario(args, tmp_path)
    assert load_scenario(reference).control_mode == mode == 'velocity'
    assert COMMAND_TOPICS[mode] == '/forward_velocity_controller/commands'
    act = sc.actuation
    with pytest.raises(ValueError, match="set command_type 'array'.*forward_velocity_controller"):
        NodeConfig(command_type='trajectory').check_actuation(act)
    NodeConfig(command_type='array').check_actuation(act)
    NodeConfig(command_type='trajectory').check_actuation(load_scenario('kuka_reach').actuation)
    with pytest.raises(ValueError, match='no reference controller for velocity mode'):
        controller_kind(reacher_velocity(tmp_path))
