"""The worker-pool interface of the sampler, so that other pools (e.g. Ray) can replace it."""

import abc
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class EnvSpaces:
    """Shapes and action bounds of the environments a pool steps (all envs alike)."""

    obs_dim: int
    """Length of one flat observation vector."""
    act_dim: int
    """Length of one action vector."""
    act_low: tuple
    """Lower action bound per dimension; workers clip actions to it before ``env.step``."""
    act_high: tuple
    """Upper action bound per dimension."""


@dataclass(frozen=True)
class WorkerFailure:
    """What went wrong in one worker: who, which environments and tasks, and the error."""

    worker: int
    """Index of the worker in the pool."""
    env_ids: tuple
    """Global indices of the environments that worker owned."""
    tasks: tuple
    """The tasks set on those environments when it failed (``None`` before ``set_tasks``)."""
    message: str
    """The exception traceback text, the exit code, or the timeout that was hit."""

    def describe(self) -> str:
        """Return a one-paragraph, human-readable account of the failure."""
        distinct = []
        for task in self.tasks:
            if task not in distinct:
                distinct.append(task)
        return (f'worker {self.worker} (envs {self.env_ids[0]}..{self.env_ids[-1]}) failed '
                f'with task(s) {distinct}: {self.message}')


class WorkerCrashed(RuntimeError):
    """One or more workers died, raised or timed out; they were already replaced by the pool."""

    def __init__(self, failures: Sequence[WorkerFailure]):
        self.failures = tuple(failures)
        super().__init__('; '.join(f.describe() for f in self.failures))


class SamplerError(RuntimeError):
    """Sampling failed even after replacing crashed workers (e.g. a task that always breaks)."""


@dataclass
class StepResult:
    """Arrays written by the workers after one step (views, valid until the next call)."""

    observations: np.ndarray  # (E, obs_dim) float32, the observation after the step
    rewards: np.ndarray       # (E,) float32 (only rows of the envs just stepped are fresh)
    terminated: np.ndarray    # (E,) bool
    truncated: np.ndarray     # (E,) bool


class WorkerBackend(abc.ABC):
    """
    A pool of workers that own ``num_envs`` environments between them.

    Environment ``e`` always lives on the same worker for the lifetime of the pool. Every call
    waits with a timeout; a worker that raises, exits or hangs is replaced by the pool and the
    call raises :class:`WorkerCrashed` naming the worker, its tasks and the error, so the caller
    can re-run the affected batch.
    """

    @abc.abstractmethod
    def start(self, env_factory: Callable[[], Any], num_envs: int) -> EnvSpaces:
        """Start the workers, build ``num_envs`` environments with ``env_factory``."""

    @abc.abstractmethod
    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Set one task per environment (``env.unwrapped.set_task``)."""

    @abc.abstractmethod
    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every environment with its own seed; return the observations (E, obs_dim)."""

    @abc.abstractmethod
    def step_send(self, actions: np.ndarray, active: np.ndarray, group: int = 0) -> None:
        """
        Start stepping the envs where ``active`` (E,) is true with their rows of ``actions``.

        Up to two groups (0, 1) of disjoint envs may be in flight at once, so the caller can
        compute one group's actions while the other group steps. Rows of other envs are
        neither read nor written.
        """

    @abc.abstractmethod
    def step_wait(self, group: int = 0) -> StepResult:
        """Wait for the step of ``group``; only the rows of its active envs are fresh."""

    def step(self, actions: np.ndarray, active: np.ndarray) -> StepResult:
        """Step the envs where ``active`` (E,) is true with ``actions`` (E, act_dim); wait."""
        self.step_send(actions, active, 0)
        return self.step_wait(0)

    def rollout(self, job) -> dict:
        """
        Run the whole episodes of ``job`` (a ``RolloutJob``) inside the workers.

        Without ``job.tasks``: one episode per env ``0..job.num_envs-1``, which must have their
        tasks set. With them: any number of episodes, each worker running its share in batches
        on its envs without a round trip per batch. Returns the arrays of
        :func:`maml_robot.sampling.rollout.run_episodes` for all episodes, in job order.
        """
        raise NotImplementedError(f'{type(self).__name__} cannot run episodes inside its '
                                  "workers; use the sampler's inference='central'")

    def _note_job(self, job, parts: dict) -> None:
        """
        Remember which tasks each worker runs for a job that carries them (crash reports).

        Such a job retasks the envs, so the tasks last given to ``set_tasks`` no longer hold.
        Subclasses keep ``_tasks`` (one per env) and clear ``_job_tasks`` when the job ends.
        """
        self._job_tasks = {} if job.tasks is None else {w: p.tasks for w, p in parts.items()}
        if job.tasks is not None:
            self._tasks = [None] * self.num_envs

    def _failed_tasks(self, w: int, envs: range) -> tuple:
        """Return the tasks worker ``w`` (envs ``envs``) was running, for a crash report."""
        return self._job_tasks.get(w, tuple(self._tasks[envs.start:envs.stop]))

    @staticmethod
    def rollout_timeout(step_timeout: float, job, envs_per_worker: int) -> float:
        """Seconds a worker may take for a rollout: ``step_timeout`` + 10 ms per env step."""
        return step_timeout + 0.01 * job.horizon * envs_per_worker

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every worker and free shared resources; safe to call twice."""

    @property
    @abc.abstractmethod
    def num_envs(self) -> int:
        """Return the number of environments in the pool (0 before ``start``)."""


def split_job(job, ranges: list) -> dict:
    """
    Return ``{worker: its part of job}`` for the workers that get episodes of ``job``.

    A job without tasks runs episode ``e`` on env ``e`` (the envs have their tasks), so it
    goes to the workers that own its envs. A job with tasks may hold any number of episodes:
    they are shared out in contiguous blocks in proportion to each worker's envs, and each
    worker runs its block in batches (:func:`maml_robot.sampling.rollout.run_job`).
    """
    total = ranges[-1].stop
    if job.tasks is None:
        if job.num_envs > total:
            raise ValueError(f'the job needs {job.num_envs} environments; the pool has {total}')
        return {w: job.envs(envs.start, min(envs.stop, job.num_envs))
                for w, envs in enumerate(ranges) if envs.start < job.num_envs}
    owned = np.cumsum([0] + [len(envs) for envs in ranges])
    bounds = (owned * job.num_envs / max(1, total)).round().astype(int)
    return {w: job.envs(int(lo), int(hi))
            for w, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])) if hi > lo}


def split_envs(num_envs: int, num_workers: int) -> list:
    """Return ``num_workers`` contiguous ``range``s that share ``num_envs`` environments."""
    if num_workers < 1:
        raise ValueError(f'num_workers must be >= 1, got {num_workers}')
    bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
    return [range(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
