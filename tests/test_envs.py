"""Gymnasium envs: registration, env checkers, determinism, the task API, truncation."""

import pickle
import warnings

import gymnasium as gym
from gymnasium.utils.env_checker import check_env as gym_check_env
from maml_robot.dynamics import Task
from maml_robot.envs import ENV_IDS, MetaRobotEnv, register_envs
from maml_robot.envs.controllers import make_controller, rollout
from maml_robot.observation import build_observation
from maml_robot.paths import data_path
import numpy as np
import pybullet
import pytest
from stable_baselines3.common.env_checker import check_env as sb3_check_env


def _trajectory(env, seed, task, actions):
    obs, _ = env.reset(seed=seed, options={'task': task})
    out = [obs]
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append(np.append(obs, reward))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize('env_id', sorted(ENV_IDS))
def test_registered_and_pass_env_checkers(env_id):
    register_envs()  # idempotent
    env = gym.make(env_id)
    try:
        assert isinstance(env.unwrapped, MetaRobotEnv)
        assert env.unwrapped.scenario.name == ENV_IDS[env_id]
        assert env.action_space.shape == (env.unwrapped.scenario.act_dim,)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # unbounded Box observations are intended
            gym_check_env(env.unwrapped)
    finally:
        env.close()
    sb_env = MetaRobotEnv(ENV_IDS[env_id])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            sb3_check_env(sb_env)
    finally:
        sb_env.close()


@pytest.mark.parametrize('name', ['reacher', 'cheetah', 'quadruped', 'kuka_reach'])
def test_same_seed_task_actions_give_same_trajectory(name):
    a, b = MetaRobotEnv(name), MetaRobotEnv(name)
    try:
        task = a.sample_tasks(1, 'test')[0]
        assert task.obs_noise_std > 0  # noise is part of what must replay
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (30, a.scenario.act_dim))
        first = _trajectory(a, 7, task, actions)
        _trajectory(a, 8, Task(), actions)  # something else in between
        again = _trajectory(a, 7, task, actions)
        other_env = _trajectory(b, 7, task, actions)
        for x, y, z in zip(first, again, other_env):
            assert np.array_equal(x, y) and np.array_equal(x, z)
        # A different task changes the dynamics: same seed and actions, different trajectory.
        task2 = a.sample_tasks(2, 'test')[1]
        changed = _trajectory(a, 7, task2, actions)
        assert not all(np.array_equal(x, y) for x, y in zip(first[1:], changed[1:]))
    finally:
        a.close()
        b.close()


def test_truncation_and_step_errors():
    env = MetaRobotEnv('reacher')
    try:
        with pytest.raises(RuntimeError, match='reset'):
            env.step(np.zeros(2))
        env.reset(seed=0)
        for t in range(env.scenario.episode_steps):
            _, _, terminated, truncated, _ = env.step(np.zeros(2))
            assert not terminated
            assert truncated == (t == env.scenario.episode_steps - 1)
        with pytest.raises(RuntimeError, match='reset'):
            env.step(np.zeros(2))
        env.reset(seed=0)
        with pytest.raises(ValueError, match='finite'):
            env.step(np.array([np.nan, 0.0]))
        with pytest.raises(ValueError, match='2 finite'):
            env.step(np.zeros(3))
    finally:
        env.close()


def test_task_api():
    env = MetaRobotEnv('reacher')
    other = MetaRobotEnv('reacher')
    try:
        tasks = env.sample_tasks(3, 'train', seed=5)
        assert tasks == other.sample_tasks(3, 'train', seed=5)
        # seed=None draws from the env's own generator (seeded by reset).
        env.reset(seed=3)
        other.reset(seed=3)
        assert env.sample_tasks(2) == other.sample_tasks(2)
        assert env.sample_tasks(40, 'test') == other.sample_tasks(40, 'test', seed=99)
        env.set_task(tasks[1])
        assert env.get_task() == tasks[1]
        env.set_task(tasks[2].to_dict())
        assert env.get_task() == tasks[2]
        with pytest.raises(TypeError):
            env.set_task(3.0)
        _, info = env.reset(seed=0, options={'task': tasks[0]})
        assert info['task'] == tasks[0] == env.get_task()
    finally:
        env.close()
        other.close()


def test_reward_from_true_state_observation_from_measured():
    """A calibration offset changes what the policy sees, never the reward or the physics."""
    env = MetaRobotEnv('reacher')
    try:
        actions = np.random.default_rng(1).uniform(-1, 1, (20, 2))
        plain = _trajectory(env, 4, Task(), actions)
        shifted = _trajectory(env, 4, Task(calibration_offset=(0.3, -0.3)), actions)
        assert [p[-1] for p in plain[1:]] == [s[-1] for s in shifted[1:]]  # rewards
        assert not np.allclose(plain[0], shifted[0])
        obs = build_observation(env.scenario, env.world.measured_state())
        assert np.array_equal(obs, shifted[-1][:-1])
    finally:
        env.close()


def test_user_scenario_path_and_close():
    env = MetaRobotEnv(str(data_path('sim', 'reacher.yaml')))
    env.reset(seed=0)
    cid = env.world.client_id
    env.close()
    assert not pybullet.isConnected(physicsClientId=cid)
    env.close()  # idempotent


def test_quadruped_terminates_when_flipped():
    env = MetaRobotEnv('quadruped')
    try:
        env.reset(seed=0)
        w = env.world
        pybullet.resetBasePositionAndOrientation(w.body_id, [0, 0, 0.6], [1, 0, 0, 0],
                                                 physicsClientId=w.client_id)
        _, _, terminated, truncated, _ = env.step(np.zeros(8))
        assert terminated and not truncated
    finally:
        env.close()


def test_adaptation_matters_on_reacher():
    """The nominal controller is far worse than the oracle that knows the task."""
    env = MetaRobotEnv('reacher')
    try:
        sc = env.scenario
        tasks = env.sample_tasks(12, 'test')
        nominal = np.array([rollout(env, make_controller(sc), t, i) for i, t in enumerate(tasks)])
        oracle = np.array([rollout(env, make_controller(sc, t), t, i)
                           for i, t in enumerate(tasks)])
        on_nominal = rollout(env, make_controller(sc), Task(), 0)
        assert oracle.mean() > nominal.mean() + 2.0
        assert np.mean(oracle > nominal + 1.0) >= 0.5
        assert on_nominal > oracle.mean()  # the nominal controller is good on nominal dynamics
    finally:
        env.close()


def test_rgb_render_and_scenario_pickles():
    env = MetaRobotEnv('reacher', render_mode='rgb_array')
    try:
        env.reset(seed=0)
        image = env.render()
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert image.std() > 0  # not a blank frame
        # Worker processes receive the scenario by pickling (not saved anywhere).
        again = pickle.loads(pickle.dumps(env.scenario))
        assert again.joint_names == env.scenario.joint_names
    finally:
        env.close()
    with pytest.raises(ValueError, match='render_mode'):
        MetaRobotEnv('reacher', render_mode='video')
