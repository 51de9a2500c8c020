"""A tiny task-settable env (gymnasium's Pendulum) with fault injection, to test the sampler."""

import os
import time

import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv
import numpy as np

FAULTS = (None, 'raise', 'exit', 'hang')


class PendulumTaskEnv(gym.Env):
    """
    Pendulum-v1 whose gravity and mass are a task, plus faults a test can ask for.

    A task is a dict: ``g`` (gravity), ``m`` (mass), ``terminate_after`` (end the episode with
    ``terminated=True`` after that many steps, or None), ``fault`` (None, 'raise', 'exit' or
    'hang') and ``fault_step`` (the step on which the fault fires). ``fault_once_file``, when
    set, makes the fault fire only while that file does not exist (it is created first), so a
    replaced worker succeeds on the second try.
    """

    metadata = {'render_modes': []}

    def __init__(self):
        self._pendulum = PendulumEnv()
        self.observation_space = self._pendulum.observation_space
        self.action_space = self._pendulum.action_space
        self._task = {'g': 10.0, 'm': 1.0}
        self._steps = 0

    def sample_tasks(self, n: int, split: str = 'train', seed=None) -> list:
        """Return ``n`` tasks with gravity in [5, 15] and mass in [0.5, 2]."""
        rng = np.random.default_rng(seed)
        return [{'g': float(rng.uniform(5, 15)), 'm': float(rng.uniform(0.5, 2.0))}
                for _ in range(n)]

    def set_task(self, task: dict) -> None:
        """Apply a task dict (see the class docstring)."""
        unknown = set(task) - {'g', 'm', 'terminate_after', 'fault', 'fault_step',
                               'fault_once_file'}
        if unknown:
            raise ValueError(f'unknown task keys {sorted(unknown)}')
        if task.get('fault') not in FAULTS:
            raise ValueError(f"task fault must be one of {FAULTS}, got {task.get('fault')!r}")
        self._task = dict(task)
        self._pendulum.g = float(task.get('g', 10.0))
        self._pendulum.m = float(task.get('m', 1.0))

    def get_task(self) -> dict:
        """Return the current task."""
        return dict(self._task)

    def reset(self, *, seed=None, options=None):
        """Reset the pendulum (random angle and velocity from ``seed``)."""
        super().reset(seed=seed)
        self._steps = 0
        obs, info = self._pendulum.reset(seed=seed, options=options)
        return obs.astype(np.float32), info

    def step(self, action):
        """Step the pendulum; fire the task's fault or early termination when due."""
        self._steps += 1
        self._maybe_fault()
        obs, reward, _, truncated, info = self._pendulum.step(action)
        limit = self._task.get('terminate_after')
        terminated = limit is not None and self._steps >= limit
        return obs.astype(np.float32), float(reward), terminated, truncated, info

    def _maybe_fault(self):
        fault = self._task.get('fault')
        if fault is None or self._steps != self._task.get('fault_step', 1):
            return
        once = self._task.get('fault_once_file')
        if once is not None:
            if os.path.exists(once):
                return
            with open(once, 'w', encoding='utf-8') as f:
                f.write('fired\n')
        if fault == 'raise':
            raise RuntimeError(f'injected fault at step {self._steps}')
        if fault == 'exit':
            os._exit(3)
        time.sleep(3600.0)  # 'hang': the pool's timeout must catch this


def make_pendulum_task_env() -> PendulumTaskEnv:
    """Build a :class:`PendulumTaskEnv` (a picklable env factory for worker processes)."""
    return PendulumTaskEnv()
