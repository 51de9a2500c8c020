"""Observation/reward functions on plain RobotStates (what the ROS node will pass)."""

import math

from maml_robot.observation import (base_pitch, build_observation, compute_reward,
                                    fingertip_position, is_terminated, observation_layout,
                                    RobotState, up_z)
from maml_robot.scenario import load_scenario
import numpy as np
import pytest


@pytest.fixture(scope='module')
def reacher():
    return load_scenario('reacher')


def test_fingertip_forward_kinematics(reacher):
    # Joint order is (elbow, shoulder). Straight arm along x, then shoulder at 90 degrees.
    assert np.allclose(fingertip_position(reacher, [0.0, 0.0]), [0.21, 0.0, 0.03])
    assert np.allclose(fingertip_position(reacher, [0.0, math.pi / 2]), [0.0, 0.21, 0.03])
    assert np.allclose(fingertip_position(reacher, [math.pi / 2, 0.0]), [0.1, 0.11, 0.03])


def test_reacher_observation_and_reward(reacher):
    goal = np.array([0.0, 0.2, 0.03])
    state = RobotState(np.array([math.pi / 2, 0.0]), np.array([0.5, -0.5]), goal=goal)
    obs = build_observation(reacher, state)
    assert obs.dtype == np.float32 and obs.shape == (reacher.obs_dim,)
    layout = observation_layout(reacher)
    values = dict(zip(layout, obs))
    assert values['cos[elbow_joint]'] == pytest.approx(0.0, abs=1e-7)
    assert values['sin[elbow_joint]'] == pytest.approx(1.0)
    assert values['joint_velocity[shoulder_joint]'] == pytest.approx(-0.5)
    assert values['fingertip.x'] == pytest.approx(0.1)
    assert values['goal_minus_fingertip.y'] == pytest.approx(0.2 - 0.11)
    action = np.array([0.5, -1.0])
    reward = compute_reward(reacher, state, action, state)
    dist = math.hypot(0.1, 0.2 - 0.11)
    assert reward == pytest.approx(-reacher.reward['goal_distance'] * dist
                                   - reacher.reward['control'] * 1.25)
    with pytest.raises(ValueError, match='None'):
        build_observation(reacher, RobotState(np.zeros(2), np.zeros(2)))
    with pytest.raises(ValueError, match='joint count'):
        build_observation(reacher, RobotState(np.zeros(3), np.zeros(3), goal=goal))


def test_pitch_and_up():
    for angle in (-2.5, -0.3, 0.0, 1.0, 3.0):
        q = (0.0, math.sin(angle / 2), 0.0, math.cos(angle / 2))
        assert base_pitch(q) == pytest.approx(angle)
    assert up_z((0, 0, 0, 1)) == pytest.approx(1.0)
    assert up_z((1, 0, 0, 0)) == pytest.approx(-1.0)


def test_legged_reward_and_termination():
    sc = load_scenario('quadruped')
    j = len(sc.joint_names)
    upright = RobotState(np.zeros(j), np.zeros(j), base_position=np.array([0, 0, 0.4]),
                         base_orientation=np.array([0, 0, 0, 1.0]),
                         base_linear_velocity=np.array([0.7, 0, 0]),
                         base_angular_velocity=np.zeros(3))
    assert not is_terminated(sc, upright)
    action = np.full(j, 0.5)
    expected = (sc.reward['forward_velocity'] * 0.7 + sc.reward['alive']
                - sc.reward['control'] * 0.25 * j)
    assert compute_reward(sc, upright, action, upright) == pytest.approx(expected)
    low = RobotState(**{**upright.__dict__, 'base_position': np.array([0, 0, 0.1])})
    flipped = RobotState(**{**upright.__dict__, 'base_orientation': np.array([1.0, 0, 0, 0])})
    assert is_terminated(sc, low) and is_terminated(sc, flipped)
    assert compute_reward(sc, upright, action, low) == pytest.approx(expected - sc.reward['alive'])
    assert build_observation(sc, upright).shape == (sc.obs_dim,) == (27,)
    cheetah = load_scenario('cheetah')
    k = len(cheetah.joint_names)
    state = RobotState(np.zeros(k), np.zeros(k), base_position=np.array([1.0, 0, 0.6]),
                       base_orientation=np.array([0, math.sin(0.1), 0, math.cos(0.1)]),
                       base_linear_velocity=np.array([2.0, 0, 0.1]),
                       base_angular_velocity=np.array([0, 0.3, 0]))
    obs = dict(zip(observation_layout(cheetah), build_observation(cheetah, state)))
    assert obs['base.pitch'] == pytest.approx(0.2) and obs['base.vx'] == pytest.approx(2.0)
    assert obs['base.wy'] == pytest.approx(0.3) and len(obs) == cheetah.obs_dim == 17
    assert not is_terminated(cheetah, state)


def _reference_observation(sc, state):
    """Return the observation term by term, straight from the schema (docs/SCENARIOS.md)."""
    q = [float(v) for v in state.joint_position]
    tip = fingertip_position(sc, q)[:2].tolist() if sc.kinematics else None
    out = []
    for term in sc.observation:
        out += {
            'joint_position': lambda: q,
            'joint_position_cos_sin': lambda: [math.cos(v) for v in q] + [math.sin(v) for v in q],
            'joint_velocity': lambda: list(state.joint_velocity),
            'fingertip_position': lambda: tip,
            'goal_position': lambda: list(state.goal[:2]),
            'fingertip_to_goal': lambda: [state.goal[0] - tip[0], state.goal[1] - tip[1]],
            'base_height': lambda: [state.base_position[2]],
            'base_pitch': lambda: [base_pitch(state.base_orientation)],
            'base_orientation': lambda: list(state.base_orientation),
            'base_planar_velocity': lambda: [state.base_linear_velocity[0],
                                             state.base_linear_velocity[2],
                                             state.base_angular_velocity[1]],
            'base_linear_velocity': lambda: list(state.base_linear_velocity),
            'base_angular_velocity': lambda: list(state.base_angular_velocity),
        }[term]()
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize('name', ['reacher', 'cheetah', 'quadruped'])
def test_compiled_observation_is_the_schema_number_for_number(name):
    # build_observation runs one straight-line function written out per scenario; it must give
    # exactly the numbers of the term-by-term definition, for lists, tuples and arrays alike
    sc = load_scenario(name)
    j = sc.act_dim
    rng = np.random.default_rng(7)
    for kind in (list, tuple, np.array):
        for _ in range(20):
            orn = rng.normal(size=4)
            state = RobotState(*(kind(rng.uniform(-3, 3, j).tolist()) for _ in range(2)),
                               goal=kind(rng.uniform(-0.2, 0.2, 3).tolist()),
                               base_position=kind(rng.normal(size=3).tolist()),
                               base_orientation=kind((orn / np.linalg.norm(orn)).tolist()),
                               base_linear_velocity=kind(rng.normal(size=3).tolist()),
                               base_angular_velocity=kind(rng.normal(size=3).tolist()))
            obs = build_observation(sc, state)
            assert obs.dtype == np.float32 and obs.shape == (sc.obs_dim,)
            assert np.array_equal(obs, _reference_observation(sc, state))


def test_observation_errors_say_what_the_state_lacks(reacher):
    cheetah = load_scenario('cheetah')
    k = cheetah.act_dim
    with pytest.raises(ValueError, match="'base_height' needs a RobotState field that is None"):
        build_observation(cheetah, RobotState(np.zeros(k), np.zeros(k)))
    with pytest.raises(ValueError, match=r'base_orientation with at least 4 numbers, got 3'):
        build_observation(cheetah, RobotState(np.zeros(k), np.zeros(k), base_position=np.ones(3),
                                              base_orientation=[0, 0, 1],
                                              base_linear_velocity=np.ones(3),
                                              base_angular_velocity=np.ones(3)))
    with pytest.raises(ValueError, match='goal with at least 2 numbers, got 1'):
        build_observation(reacher, RobotState([0.0, 0.0], [0.0, 0.0], goal=[0.1]))
    with pytest.raises(ValueError, match='expects 2 .check the joint count'):
        build_observation(reacher, RobotState([0.0], [0.0, 0.0], goal=[0.1, 0.1, 0.0]))
