"""The Ray actor that holds a slice of the environments (the Ray backend's worker)."""

import os
import traceback
from typing import Any, Callable

from maml_robot.sampling.worker import buffer_shape, BUFFERS, Worker
import numpy as np


class EnvActor:
    """
    The environments of one Ray actor (the class is wrapped with ``ray.remote`` on first use).

    It holds the very worker the local pool runs (:class:`maml_robot.sampling.worker.Worker`)
    with private numpy buffers instead of shared memory, so both backends clip and step
    alike. Every method answers ``('ok', payload)`` or ``('error', env_index, traceback[, task])``;
    after an error the driver replaces the actor.
    """

    def __init__(self, env_factory: Callable[[], Any], num_envs: int, threads: int = 1):
        # lazy: sampling/ imports no torch; a worker loads it only to pin its thread pool
        import torch  # torch threads fight the other workers
        torch.set_num_threads(threads)
        self.worker, self.error = None, None
        try:
            self.worker = Worker(None, env_factory, range(num_envs))
        except Exception:  # noqa: B902 - reported to the driver by spaces()
            self.error = traceback.format_exc()
            return
        sp = self.worker.spaces
        self.worker.buf = {key: np.zeros(buffer_shape(key, num_envs, sp['obs_dim'],
                                                      sp['act_dim']), dtype=dtype)
                           for key, (dtype, _) in BUFFERS.items()}

    def _guard(self, fn, *args):
        try:
            return ('ok', fn(*args))
        except Exception:  # noqa: B902 - every error goes back to the driver, which replaces us
            current = None if self.worker is None else self.worker.current
            task = None if self.worker is None else self.worker.current_task()
            return ('error', current, traceback.format_exc(), task)

    def spaces(self):
        """Return the spaces of the environments, or the error that broke their construction."""
        if self.error is not None:
            return ('error', None, self.error)
        return ('ok', self.worker.spaces)

    def pid(self) -> int:
        """Return the process id of this actor (for logs and tests)."""
        return os.getpid()

    def set_tasks(self, tasks):
        """Set one task per environment of this actor."""
        return self._guard(self.worker.set_tasks, tasks)

    def reset(self, seeds):
        """Reset the environments; answer their observations (n, obs_dim)."""
        def run():
            self.worker.reset(seeds)
            return self.worker.buf['observations'].copy()
        return self._guard(run)

    def step(self, rows: np.ndarray, actions: np.ndarray, group: int):
        """
        Step local envs ``rows`` with ``actions`` (len(rows), act_dim).

        Answers one float32 array (len(rows), obs_dim + 3): observation, reward, terminated,
        truncated (one message is cheaper than four).
        """
        def run():
            buf = self.worker.buf
            buf['actions'][rows] = actions
            buf['active'][:, group] = False
            buf['active'][rows, group] = True
            self.worker.step(group)
            return np.concatenate([buf['observations'][rows],
                                   buf['rewards'][rows, None],
                                   buf['terminated'][rows, None],
                                   buf['truncated'][rows, None]], axis=1, dtype=np.float32)
        return self._guard(run)

    def rollout(self, job):
        """Run one episode per env of ``job`` (a RolloutJob); answer the arrays."""
        return self._guard(self.worker.rollout, job)


_ACTOR_CLASS = None


def task_of(answer: tuple):
    """Return the task in an actor's error answer (``None`` in a three-part answer)."""
    return answer[3] if len(answer) > 3 else None


def actor_class(ray):
    """Return EnvActor wrapped with ``ray.remote`` (wrapped once per process)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(EnvActor)
    return _ACTOR_CLASS
