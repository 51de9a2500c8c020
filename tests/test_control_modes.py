"""Control modes: torque and position (PD at the physics rate), the actuator law, safe holds."""

import dataclasses
from pathlib import Path

from maml_robot.actuation import Actuation
from maml_robot.dynamics import sample_tasks, Task
from maml_robot.observation import is_terminated
from maml_robot.scenario import build_scenario, load_scenario, ScenarioError
from maml_robot.sim.world import World
import numpy as np
import pytest
import yaml

A1 = 'a1_walk'


def _source(name):
    return yaml.safe_load(Path(load_scenario(name).path).read_text())


def _build(data, tmp_path, name='s.yaml'):
    return build_scenario(data, tmp_path / name)


def _reacher_position(tmp_path, **control):
    data = _source('reacher')
    data['control'] = {'mode': 'position', 'rate_hz': 25, 'action_scale': 0.5, 'kp': 0.5,
                       'kd': 0.02, **control}
    return _build(data, tmp_path)


def _zero_action_episode(world, rng_seed=0):
    """Run one episode of zero actions; return (steps survived, final trunk height)."""
    sc = world.scenario
    world.reset(np.random.default_rng(rng_seed))
    for step in range(sc.episode_steps):
        world.apply_action(np.zeros(sc.act_dim))
        world.step()
        state = world.true_state()
        if is_terminated(sc, state):
            return step + 1, float(state.base_position[2])
    return sc.episode_steps, float(state.base_position[2])


def test_actuation_commands_and_holds_per_mode():
    j = 2
    common = {'action_scale': np.array([0.5, 2.0]), 'effort_limit': np.array([1.0, 3.0]),
              'position_limits': np.array([[-1.0, 1.0], [-np.inf, np.inf]]),
              'default_position': np.array([0.2, -0.3]), 'kp': np.array([10.0, 5.0]),
              'kd': np.array([1.0, 0.5])}
    pos = Actuation(mode='position', hold='default', **common)
    # q_target = default + clip(action) * scale, within the position limits
    np.testing.assert_allclose(pos.command([1.0, -0.5]), [0.7, -1.3])
    np.testing.assert_allclose(pos.command([5.0, 0.0]), [0.7, -0.3])   # action clipped to 1
    pos_narrow = dataclasses.replace(pos, action_scale=np.array([2.0, 1.0]))
    np.testing.assert_allclose(pos_narrow.command([1.0, 0.0]), [1.0, -0.3])  # upper limit
    np.testing.assert_allclose(pos.hold_command(last=[0.5, 0.5]), [0.2, -0.3])  # default pose
    last = dataclasses.replace(pos, hold='last')
    np.testing.assert_allclose(last.hold_command(last=[0.5, 9.0]), [0.5, 9.0])
    np.testing.assert_allclose(last.hold_command(last=[3.0, 0.0]), [1.0, 0.0])  # clipped
    np.testing.assert_allclose(last.hold_command(last=None), [0.2, -0.3])
    np.testing.assert_allclose(last.hold_command(last=[np.nan, 0.0]), [0.2, -0.3])
    # PD: kp (target - q) - kd qd, clamped to the effort limit
    np.testing.assert_allclose(pos.pd_effort([0.2, 0.0], [0.1, 0.0], [0.5, 1.0]),
                               [10 * 0.1 - 0.5, -0.5])
    np.testing.assert_allclose(pos.pd_effort([1.0, 0.0], [0.0, 2.0], [0.0, 0.0]), [1.0, -3.0])
    torque = Actuation(mode='torque', hold='zero', **common)
    np.testing.assert_allclose(torque.command([1.0, -0.5]), [0.5, -1.0])
    np.testing.assert_allclose(torque.hold_command(last=[0.3, 0.3]), np.zeros(j))
    again = Actuation.from_dict(pos.to_dict())
    np.testing.assert_array_equal(again.position_limits, pos.position_limits)
    assert again.mode == 'position' and again.hold == 'default'
    with pytest.raises(ValueError,
                       match="hold for torque control must be one of \\('zero', 'gravity'\\)"):
        dataclasses.replace(torque, hold='default')
    with pytest.raises(ValueError, match='control mode must be one of'):
        dataclasses.replace(torque, mode='speed')


@pytest.mark.parametrize('name, joints, height_min', [(A1, 12, 0.22), ('quadruped', 8, 0.3)])
def test_position_legged_robots_stand_with_zero_action_on_every_test_task(name, joints,
                                                                          height_min):
    sc = load_scenario(name)
    assert sc.control_mode == 'position' and sc.act_dim == joints
    world = World(sc)
    try:
        tasks = [Task.nominal(sc)] + sample_tasks(sc, None, 'test')
        assert len(tasks) == 41
        for i, task in enumerate(tasks):
            world.set_task(task)
            steps, height = _zero_action_episode(world, i)
            assert steps == sc.episode_steps, f'task {i} ({task.describe(sc)}) fell'
            assert height > height_min, f'task {i}: trunk at {height:.3f} m'
    finally:
        world.close()


def test_a1_torque_mode_with_zero_action_falls(tmp_path):
    # the same robot commanded in torque mode: a zero action is zero effort, and it collapses
    data = _source(A1)
    data['control'] = {'mode': 'torque', 'rate_hz': 50}
    sc = _build(data, tmp_path)
    world = World(sc)
    try:
        steps, height = _zero_action_episode(world)
    finally:
        world.close()
    assert steps < sc.episode_steps // 2, f'stood {steps} steps at {height:.3f} m'


def test_position_mode_tracks_target_with_offset_and_dead_joint(tmp_path):
    sc = _reacher_position(tmp_path)
    world = World(sc)
    try:
        target_action = np.array([0.6, -0.4])            # targets 0.3 and -0.2 rad
        for task, expect in (
                (Task.nominal(sc), [0.3, -0.2]),
                # the driver sees the encoder: the true pose settles at target - offset
                (dataclasses.replace(Task.nominal(sc), calibration_offset=(0.1, -0.05)),
                 [0.2, -0.15])):
            world.set_task(task)
            world.reset(np.random.default_rng(1))
            for _ in range(100):
                world.apply_action(target_action)
                world.step()
            np.testing.assert_allclose(world.true_state().joint_position, expect, atol=0.01)
        dead = dataclasses.replace(Task.nominal(sc), dead_joints=('elbow_joint',))
        world.set_task(dead)
        world.reset(np.random.default_rng(1))
        world.apply_action(target_action)
        world.step()
        assert world._torque[0] == 0.0 and world._torque[1] != 0.0
    finally:
        world.close()


def test_torque_mode_per_joint_action_scale(tmp_path):
    data = _source('reacher')
    data['control']['action_scale'] = {'elbow_joint': 0.05}
    sc = _build(data, tmp_path)
    np.testing.assert_allclose(sc.action_scale, [0.05, 0.1])    # shoulder keeps the URDF 0.1
    world = World(sc)
    try:
        world.apply_action(np.array([1.0, 1.0]))
        np.testing.assert_allclose(world._torque, [0.05, 0.1])
    finally:
        world.close()
    assert load_scenario('reacher').actuation.hold == 'zero'


@pytest.mark.parametrize('control,key', [
    ({'mode': 'position', 'rate_hz': 25, 'action_scale': 0.5}, 'control.kp'),
    ({'mode': 'position', 'rate_hz': 25, 'action_scale': 0.5, 'kp': -1.0}, 'control.kp'),
    ({'mode': 'torque', 'rate_hz': 25, 'kp': 1.0}, 'control.kp'),
    ({'mode': 'torque', 'rate_hz': 25, 'hold': 'last'}, 'control.hold'),
    ({'mode': 'position', 'rate_hz': 25, 'action_scale': 0.5, 'kp': 1.0,
      'default_joint_position': {'elbow_joint': 3.0}}, 'control.default_joint_position'),
    ({'mode': 'torque', 'rate_hz': 25, 'action_scale': 1.0}, 'control.action_scale'),
])
def test_bad_control_sections_name_the_key(tmp_path, control, key):
    data = _source('reacher')
    data['control'] = control
    with pytest.raises(ScenarioError) as info:
        _build(data, tmp_path)
    assert info.value.key == key, str(info.value)


def test_kuka_position_mode_holds_its_pose_under_gravity_and_torque_mode_does_not(tmp_path):
    sc = load_scenario('kuka_reach')
    assert sc.control_mode == 'position' and sc.actuation.hold == 'last'

    def hold(scenario, task):
        """Return (tip motion over the last quarter of an episode, final tip height)."""
        world = World(scenario, task=task)
        try:
            world.reset(np.random.default_rng(0))
            tips = []
            for _ in range(scenario.episode_steps):
                world.apply_action(np.zeros(scenario.act_dim))
                world.step()
                tips.append(world.link_position('lbr_iiwa_link_7'))
            late = np.array(tips[-len(tips) // 4:])
            return float(np.ptp(late, axis=0).max()), float(tips[-1][2])
        finally:
            world.close()
    for task in [None] + sample_tasks(sc, 8, 'test'):
        motion, height = hold(sc, task)
        # the arm settles where the PD holds it (calibration offsets shift that pose a little)
        # and stays there: no sag, no oscillation
        assert motion < 0.005 and height > 0.25, (motion, height)
    data = _source('kuka_reach')
    data['control'] = {'mode': 'torque', 'rate_hz': 25}
    motion, height = hold(_build(data, tmp_path), None)
    assert motion > 0.05 or height < 0.25, (motion, height)     # unpowered, it falls


def _a1_front_left_only(tmp_path, uncontrolled):
    data = _source(A1)
    leg = ['FL_hip_joint', 'FL_lower_joint', 'FL_upper_joint']
    data['joints'] = leg
    for key in ('default_joint_position',):
        data['control'][key] = {n: v for n, v in data['control'][key].items() if n in leg}
    data['control']['uncontrolled'] = uncontrolled
    data['initial_state']['joint_position'] = {
        n: v for n, v in data['initial_state']['joint_position'].items() if n in leg}
    data['dynamics']['splits']['ood']['ranges']['dead_joint']['joints'] = ['FL_hip_joint']
    return _build(data, tmp_path, f'{uncontrolled}.yaml')


def test_uncontrolled_joints_lock_or_move_freely(tmp_path):
    import pybullet
    motion = {}
    for mode in ('lock', 'free'):
        sc = _a1_front_left_only(tmp_path, mode)
        assert sc.uncontrolled == mode and sc.act_dim == 3
        world = World(sc)
        try:
            world.reset(np.random.default_rng(0))
            for _ in range(50):
                world.apply_action(np.zeros(3))
                world.step()
            cid, body = world.client_id, world.body_id
            others = [i for i in range(pybullet.getNumJoints(body, physicsClientId=cid))
                      if pybullet.getJointInfo(body, i, physicsClientId=cid)[2]
                      != pybullet.JOINT_FIXED and i not in world.robot.joints]
            assert len(others) == 9
            start = [min(max(0.0, info[8]), info[9]) for info in (  # the load pose, in limits
                pybullet.getJointInfo(body, i, physicsClientId=cid) for i in others)]
            motion[mode] = max(abs(s[0] - q) for s, q in zip(pybullet.getJointStates(
                body, others, physicsClientId=cid), start))
        finally:
            world.close()
    assert motion['lock'] < 0.02 and motion['free'] > 0.2, motion
    with pytest.raises(ScenarioError, match='control.uncontrolled'):
        _a1_front_left_only(tmp_path, 'loose')


def test_a_range_over_a_quantity_the_robot_lacks_warns(tmp_path):
    from maml_robot.scenario import ScenarioWarning
    data = _source('reacher')           # no ground: friction changes nothing
    data['dynamics']['splits']['train']['ranges']['friction_scale'] = [0.5, 1.5]
    with pytest.warns(ScenarioWarning, match=r'train\.ranges\.friction_scale.*no ground'):
        _build(data, tmp_path)
    data = _source(A1)                  # the A1's URDF has no joint damping
    data['dynamics']['splits']['train']['ranges']['damping_scale'] = [0.5, 2.0]
    with pytest.warns(ScenarioWarning, match='damping_scale.*zero <dynamics damping>'):
        _build(data, tmp_path)


def test_position_mode_reference_controllers_fit_the_robot():
    from maml_robot.envs import MetaRobotEnv
    from maml_robot.envs.controllers import controller_kind, make_controller, rollout
    kuka, a1 = load_scenario('kuka_reach'), load_scenario(A1)
    assert controller_kind(kuka) == 'pose (IK to the goal)'
    assert controller_kind(a1) == 'pose (stand)'
    assert controller_kind(load_scenario('reacher')) == 'Jacobian-transpose PD reacher'
    env = MetaRobotEnv(kuka)
    try:
        task = sample_tasks(kuka, 1, 'test')[0]
        zero = rollout(env, lambda obs: np.zeros(kuka.act_dim), task, 0)
        nominal = rollout(env, make_controller(kuka), task, 0)
        oracle = rollout(env, make_controller(kuka, task), task, 0)
        # IK reaches the goal; knowing the calibration offsets reaches it better
        assert oracle > nominal > zero, (oracle, nominal, zero)
        env.reset(seed=0, options={'task': Task()})
        controller = make_controller(kuka)
        obs, *_ = env.reset(seed=1)
        for _ in range(kuka.episode_steps - 1):
            obs, reward, *_ = env.step(controller(obs))
        distance = float(np.linalg.norm(obs[-3:]))       # goal_minus_ee (nominal: no noise)
        assert distance < 0.06, f'the nominal arm ends {distance:.3f} m from its goal'
    finally:
        env.close()


def test_the_sims_float_pd_loop_is_the_actuation_law():
    """World's plain-float PD loop (fast path) computes exactly what Actuation specifies."""
    from maml_robot.sim.robot import PositionLoop
    rng = np.random.default_rng(3)
    for name in (A1, 'kuka_reach'):
        act = load_scenario(name).actuation
        loop = PositionLoop(act)
        for _ in range(20):
            action = rng.uniform(-1, 1, act.action_scale.shape)
            q = act.default_position + rng.normal(0, 0.5, action.shape)
            qd = rng.normal(0, 3, action.shape)
            target = loop.target(action.tolist())
            np.testing.assert_allclose(target, act.command(action), rtol=0, atol=1e-12)
            np.testing.assert_allclose(loop.effort(target, q.tolist(), qd.tolist()),
                                       act.pd_effort(target, q, qd), rtol=0, atol=1e-9)
