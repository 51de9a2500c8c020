"""PyBullet World: URDFs load, worlds are independent, and every Task parameter acts."""

import math

from maml_robot.dynamics import sample_tasks, Task
from maml_robot.observation import fingertip_position
from maml_robot.scenario import load_scenario, SHIPPED
from maml_robot.sim.world import World
import numpy as np
import pybullet
import pytest


@pytest.fixture
def reacher():
    world = World('reacher')
    yield world
    world.close()


def _rest(world, task=None):
    """Set ``task`` and put the robot at its nominal pose, at rest (no noise)."""
    world.set_task(task)
    world.reset(np.random.default_rng(0))
    cid, body = world.client_id, world.body_id
    for index, q in zip(world.robot.joints, world.scenario.initial_joint_position):
        pybullet.resetJointState(body, index, q, 0.0, physicsClientId=cid)
    world._read()


def _velocity_after(world, action, task=None, steps=1):
    _rest(world, task)
    for _ in range(steps):
        world.apply_action(action)
        world.step()
    return world.true_state().joint_velocity.copy()


@pytest.mark.parametrize('name', SHIPPED)
def test_urdf_loads_with_file_inertias(name):
    sc = load_scenario(name)
    world = World(sc)
    try:
        cid, body = world.client_id, world.body_id
        names = [pybullet.getJointInfo(body, i, physicsClientId=cid)[1].decode()
                 for i in range(pybullet.getNumJoints(body, physicsClientId=cid))]
        assert set(sc.joint_names) <= set(names)
        total = sum(pybullet.getDynamicsInfo(body, i, physicsClientId=cid)[0]
                    for i in range(len(names)))
        if not sc.base_fixed:   # whole robots: the torso too
            total += pybullet.getDynamicsInfo(body, -1, physicsClientId=cid)[0]
        expected = {'reacher': 0.72, 'cheetah': 13.12, 'quadruped': 8.0, 'kuka_reach': 17.5,
                    'a1_walk': 12.458}[name]
        assert total == pytest.approx(expected, abs=1e-6)
        state = world.true_state()
        assert state.joint_position.shape == (len(sc.joint_names),)
    finally:
        world.close()
    assert not pybullet.isConnected(physicsClientId=cid)


def test_worlds_do_not_interfere():
    a, b = World('reacher'), World('reacher')
    try:
        assert a.client_id != b.client_id
        _rest(a)
        _rest(b)
        before = b.true_state().joint_position.copy()
        for _ in range(5):
            a.apply_action([1.0, 1.0])
            a.step()
        assert np.abs(a.true_state().joint_velocity).max() > 0.1
        b._read()
        assert np.array_equal(b.true_state().joint_position, before)
        a.close()
        b.apply_action([1.0, 1.0])
        b.step()  # still works after the other world closed
        assert np.abs(b.true_state().joint_velocity).max() > 0.1
    finally:
        a.close()
        b.close()


def test_forward_kinematics_match_pybullet(reacher):
    rng = np.random.default_rng(1)
    cid, body = reacher.client_id, reacher.body_id
    for _ in range(5):
        q = rng.uniform(-2.5, 2.5, 2)
        for index, value in zip(reacher.robot.joints, q):
            pybullet.resetJointState(body, index, value, 0.0, physicsClientId=cid)
        tip = reacher.link_position('fingertip')
        assert np.allclose(fingertip_position(reacher.scenario, q), tip, atol=1e-6)


def test_reset_goal_within_reach_and_deterministic(reacher):
    lo, hi = reacher.scenario.goal_radius
    goals = []
    for seed in (0, 0, 1):
        reacher.reset(np.random.default_rng(seed))
        goals.append(reacher.true_state().goal.copy())
        assert lo <= math.hypot(*goals[-1][:2]) <= hi
    assert np.array_equal(goals[0], goals[1]) and not np.array_equal(goals[0], goals[2])
    with pytest.raises(ValueError, match='goal'):
        reacher.set_goal([0.1, 0.2])


def test_motor_direction_strength_and_dead_joint(reacher):
    # Joints are (elbow, shoulder); push the shoulder only.
    nominal = _velocity_after(reacher, [0.0, 1.0])
    assert nominal[1] > 0.1
    reversed_ = _velocity_after(reacher, [0.0, 1.0], Task(motor_direction=(1, -1)))
    assert np.allclose(reversed_, -nominal, rtol=1e-6, atol=1e-9)
    small = _velocity_after(reacher, [0.0, 0.05])  # small: in the linear regime
    weak = _velocity_after(reacher, [0.0, 0.1], Task(motor_strength=(1.0, 0.5)))
    assert np.allclose(weak, small, rtol=1e-6)
    dead = _velocity_after(reacher, [0.0, 1.0], Task(dead_joints=('shoulder_joint',)))
    assert np.allclose(dead, 0.0, atol=1e-12)
    # Dead elbow: the shoulder still moves.
    assert _velocity_after(reacher, [0.0, 1.0], Task(dead_joints=('elbow_joint',)))[1] > 0.1


def test_mass_payload_and_damping(reacher):
    # Small torques, no damping: the velocity is inversely proportional to the mass scale.
    undamped = Task(damping_scale=1e-9)
    nominal = _velocity_after(reacher, [0.0, 0.05], undamped)
    heavy = _velocity_after(reacher, [0.0, 0.05], Task(mass_scale=2.0, damping_scale=1e-9))
    assert np.allclose(heavy, nominal / 2, rtol=0.01)
    # A payload at the fingertip mostly loads the elbow.
    elbow = _velocity_after(reacher, [0.05, 0.0], undamped)
    loaded = _velocity_after(reacher, [0.05, 0.0], Task(payload=0.1, damping_scale=1e-9))
    assert 0 < loaded[0] < 0.8 * elbow[0]
    cid, body = reacher.client_id, reacher.body_id
    tip = reacher.robot.link_index['fingertip']
    assert pybullet.getDynamicsInfo(body, tip, physicsClientId=cid)[0] == pytest.approx(0.12)
    # Tasks do not accumulate: back to nominal restores the masses.
    reacher.set_task(None)
    assert pybullet.getDynamicsInfo(body, tip, physicsClientId=cid)[0] == pytest.approx(0.02)
    # Damping: coast from a spin with zero torque.
    speeds = []
    for scale in (0.5, 4.0):
        _rest(reacher, Task(damping_scale=scale))
        pybullet.resetJointState(body, reacher.robot.joints[1], 0.0, 5.0, physicsClientId=cid)
        for _ in range(10):
            reacher.apply_action([0.0, 0.0])
            reacher.step()
        speeds.append(abs(reacher.true_state().joint_velocity[1]))
    assert speeds[1] < 0.8 * speeds[0]


def test_latency_delays_actions(reacher):
    delayed = Task(latency_steps=1)
    assert np.allclose(_velocity_after(reacher, [0.0, 1.0], delayed), 0.0, atol=1e-12)
    assert _velocity_after(reacher, [0.0, 1.0], delayed, steps=2)[1] > 0.1
    # The first action of the second step is the one from step one.
    _rest(reacher, delayed)
    reacher.apply_action([0.0, 1.0])
    reacher.step()
    reacher.apply_action([0.0, 0.0])
    reacher.step()
    assert reacher.true_state().joint_velocity[1] > 0.1


def test_calibration_offset_and_noise(reacher):
    _rest(reacher, Task(calibration_offset=(0.3, -0.2)))
    true, measured = reacher.true_state(), reacher.measured_state()
    assert np.allclose(measured.joint_position - true.joint_position, [0.3, -0.2])
    assert np.array_equal(measured.joint_velocity, true.joint_velocity)
    _rest(reacher, Task(obs_noise_std=0.05))
    diffs = np.array([reacher.measured_state().joint_position - reacher.true_state()
                      .joint_position for _ in range(300)])
    assert diffs.std() == pytest.approx(0.05, rel=0.15)


def test_ground_friction_scale():
    world = World('cheetah', Task(friction_scale=0.5))
    try:
        info = pybullet.getDynamicsInfo(world._plane, -1, physicsClientId=world.client_id)
        assert info[1] == pytest.approx(0.5 * world.scenario.ground_friction)
    finally:
        world.close()


def test_bad_actions_and_tasks(reacher):
    with pytest.raises(ValueError, match='finite'):
        reacher.apply_action([np.nan, 0.0])
    with pytest.raises(ValueError, match='2 finite'):
        reacher.apply_action([0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match='motor_direction has 3'):
        reacher.set_task(Task(motor_direction=(1, 1, 1)))


# Fraction of the URDF velocity limit that zero torque must stay under. The Kuka is not at rest
# without torque: it falls under gravity and swings at 8-20 rad/s, the same at 2.5, 1 and 0.5 ms
# steps (physics, not integration error); a light ood arm (mass x0.55) blows up at 2-5 ms steps
# (292 rad/s to the 1e4 clamp), hence its 1 ms step.
STABLE_FRACTION = {'kuka_reach': 3.0}


@pytest.mark.parametrize('name', SHIPPED)
def test_simulation_stays_stable_on_every_split_task(name):
    """With zero torque no joint reaches its velocity clamp (explicit damping can blow up)."""
    sc = load_scenario(name)
    world = World(sc)
    try:
        for i, task in enumerate(sample_tasks(sc, None, 'test') + sample_tasks(sc, None, 'ood')):
            world.set_task(task)
            world.reset(np.random.default_rng(i))
            # Under a PD loop a reversed motor is positive feedback: the joint runs to its stop,
            # as a miswired servo does. Those joints must only stay clear of the clamp.
            runaway = (np.asarray(task.motor_direction) < 0) & (sc.control_mode == 'position')
            worst, runaway_worst = 0.0, 0.0
            for _ in range(40):
                world.apply_action(np.zeros(sc.act_dim))
                world.step()
                speed = np.abs(world.true_state().joint_velocity)
                worst = max(worst, speed[~runaway].max(initial=0.0))
                runaway_worst = max(runaway_worst, speed[runaway].max(initial=0.0))
            assert worst < STABLE_FRACTION.get(name, 0.9) * sc.velocity_limits.min(), (i, task)
            assert runaway_worst < 3.0 * sc.velocity_limits.min(), (i, task)
    finally:
        world.close()


def test_list_states_are_the_array_states_number_for_number(reacher):
    """The env's per-step path (lists of floats) reports exactly what the array API reports."""
    task = Task(calibration_offset=(0.2, 0.0), obs_noise_std=0.01)   # joints sorted: elbow first
    reacher.set_task(task)
    reacher.reset(np.random.default_rng(3))
    clipped = reacher.apply_action(np.array([2.0, -0.25], dtype=np.float32))
    assert clipped == [1.0, -0.25]   # clipped to [-1, 1], plain floats for the control cost
    reacher.step()
    true_a, true_l = reacher.true_state(), reacher.true_state(lists=True)
    assert true_a.joint_position.tolist() == true_l.joint_position
    assert true_a.joint_velocity.tolist() == true_l.joint_velocity
    assert true_a.goal.tolist() == true_l.goal
    for lists in (False, True):     # same noise draw from the same generator state
        reacher._rng = np.random.default_rng(7)
        measured = reacher.measured_state(lists=lists)
        q, qd = (np.asarray(measured.joint_position), np.asarray(measured.joint_velocity))
        if not lists:
            first = (q, qd)
    np.testing.assert_array_equal(first[0], q)
    np.testing.assert_array_equal(first[1], qd)
    # and it is the measurement: offset on the elbow's position, noise on everything
    assert abs(q[0] - true_a.joint_position[0] - 0.2) < 0.05
    assert not np.array_equal(qd, true_a.joint_velocity)
