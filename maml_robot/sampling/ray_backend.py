"""Rollout workers as Ray actors: the sampler's worker pool spread over a Ray cluster."""

import logging
import time
from typing import Any, Callable, Sequence

from maml_robot.sampling.backend import (EnvSpaces, split_envs, split_job, StepResult,
                                         WorkerBackend, WorkerCrashed, WorkerFailure)
from maml_robot.sampling.backend_choice import (add_backend_arguments,  # noqa: F401
                                                BACKENDS, make_backend)
from maml_robot.sampling.ray_actor import actor_class, EnvActor, task_of  # noqa: F401
from maml_robot.sampling.ray_cluster import (  # noqa: F401 - INSTALL_HINT re-exported
    cluster_call, ClusterLost, ClusterWatch, connect, import_ray, INSTALL_HINT, one_line,
    probe_nodes)
from maml_robot.sampling.rollout import concat_results
from maml_robot.sampling.worker import buffer_shape, BUFFERS, GROUPS
import numpy as np

logger = logging.getLogger(__name__)

WAIT_SLICE = 1.0
"""Seconds of one ``ray.wait``/``ray.get`` before the driver looks at the cluster again."""
LOG_EVERY = 10.0
"""Seconds between two log lines while workers are being placed (start, replacement)."""


# ---------------------------------------------------------------------------- the driver
class RayBackend(WorkerBackend):
    """
    Environments in ``num_workers`` Ray actors, anywhere on a Ray cluster.

    Each actor owns a contiguous slice of the environments, like a worker process of
    :class:`~maml_robot.sampling.local.ProcessBackend`; actions go out and observations come
    back as small numpy arrays in Ray calls. The same seeds and worker layout give the same
    episodes as the local backend. A dead, failing or hung actor is killed, replaced and
    reported with :class:`WorkerCrashed`; a lost cluster raises :class:`ClusterLost`.

    :param num_workers: actors (fewer are used when there are fewer environments).
    :param address: the cluster to join: None starts a private Ray instance on this machine,
        'auto' joins the one started here with ``ray start``, 'HOST:PORT' a remote head.
        Ignored when Ray is already initialized in this process.
    :param start_timeout: seconds an actor may take to be placed and build its environments.
    :param step_timeout: seconds an actor may take for one set_tasks/reset/step call.
    :param threads: torch threads in each actor.
    :param num_cpus_per_worker: CPUs Ray reserves for each actor.
    :param init_kwargs: extra keyword arguments of ``ray.init`` (e.g. ``num_cpus``).
    :param probe_timeout: seconds the head (its GCS) may stay unreachable, and seconds to wait
        for the cluster to say which nodes are alive after a worker failed; then the cluster
        is lost (:class:`ClusterLost`).
    """

    def __init__(self, num_workers: int, *, address: str | None = None,
                 start_timeout: float = 120.0, step_timeout: float = 60.0, threads: int = 1,
                 num_cpus_per_worker: float = 1.0, init_kwargs: dict | None = None,
                 probe_timeout: float = 15.0):
        if num_workers < 1:
            raise ValueError(f'num_workers must be >= 1, got {num_workers}')
        if min(start_timeout, step_timeout, probe_timeout) <= 0:
            raise ValueError('start_timeout, step_timeout and probe_timeout must be > 0 seconds')
        if num_cpus_per_worker < 0:
            raise ValueError(f'num_cpus_per_worker must be >= 0, got {num_cpus_per_worker}')
        self.num_workers = num_workers
        self.address = address
        self.start_timeout = start_timeout
        self.step_timeout = step_timeout
        self.threads = threads
        self.num_cpus_per_worker = num_cpus_per_worker
        self.probe_timeout = probe_timeout
        self.init_kwargs = dict(init_kwargs or {})
        self.replacements = 0
        """Actors replaced so far (dead, failed or hung)."""
        self._ray = None
        self._owns_ray = False
        self._watch = None  # ClusterWatch of the head, while connected
        self._lost = False  # set once ClusterLost was raised: no more Ray calls but shutdown
        self._factory = None
        self._actors, self._ranges, self._tasks, self._buf = [], [], [], {}
        self._job_tasks = {}  # worker -> the tasks of its part of a running job
        self._inflight = [None] * GROUPS  # per group: {worker: (ref, local rows)} or None
        self.spaces = None

    # ----------------------------------------------------------------------------- lifecycle
    @property
    def num_envs(self) -> int:
        """Return the number of environments in the pool (0 before ``start``)."""
        return self._ranges[-1].stop if self._ranges else 0

    @property
    def actors(self) -> list:
        """Return the actor handles, one per worker (replaced actors have new handles)."""
        return list(self._actors)

    def start(self, env_factory: Callable[[], Any], num_envs: int) -> EnvSpaces:
        """Connect to Ray, start the actors and build ``num_envs`` environments."""
        if num_envs < 1:
            raise ValueError(f'num_envs must be >= 1, got {num_envs}')
        self._stop_actors()
        self._connect()
        self._factory = env_factory
        self._ranges = split_envs(num_envs, min(self.num_workers, num_envs))
        self._tasks = [None] * num_envs
        self._actors = [self._create(w) for w in range(len(self._ranges))]
        spaces = self._await_spaces(range(len(self._ranges)), replacing=False)
        if any(s != spaces[0] for s in spaces):
            raise ValueError(f'env_factory built environments with different spaces: {spaces}')
        self.spaces = EnvSpaces(**spaces[0])
        self._buf = {key: np.zeros(buffer_shape(key, num_envs, self.spaces.obs_dim,
                                                self.spaces.act_dim), dtype=dtype)
                     for key, (dtype, _) in BUFFERS.items() if key not in ('actions', 'active')}
        return self.spaces

    def close(self) -> None:
        """Kill the actors; shut Ray down if this backend started it. Safe to call twice."""
        self._stop_actors()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._owns_ray and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    # ---------------------------------------------------------------------------- operations
    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Set one task per environment; the pool remembers them for crash reports."""
        if len(tasks) != self.num_envs:
            raise ValueError(f'set_tasks needs one task per environment ({self.num_envs}), '
                             f'got {len(tasks)}')
        self._tasks = list(tasks)
        self._collect({w: self._submit(w, 'set_tasks', self._tasks[r.start:r.stop])
                       for w, r in enumerate(self._ranges)})

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every environment with its seed; return the observation buffer (E, obs_dim)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f'reset needs one seed per environment ({self.num_envs}), '
                             f'got {len(seeds)}')
        seeds = [int(s) for s in seeds]
        answers = self._collect({w: self._submit(w, 'reset', seeds[r.start:r.stop])
                                 for w, r in enumerate(self._ranges)})
        buf = self._buf
        for w, obs in answers.items():
            envs = self._ranges[w]
            buf['observations'][envs.start:envs.stop] = obs
        for key in ('rewards', 'terminated', 'truncated'):
            buf[key].fill(0)
        return buf['observations']

    def step_send(self, actions: np.ndarray, active: np.ndarray, group: int = 0) -> None:
        """Send the active rows of ``actions`` to the actors that own them."""
        if group not in range(GROUPS) or self._inflight[group] is not None:
            raise ValueError(f'group must be one of {tuple(range(GROUPS))} and not in flight; '
                             f'got {group}')
        active = np.asarray(active, dtype=bool)
        sent = {}
        for w, envs in enumerate(self._ranges):
            rows = np.flatnonzero(active[envs.start:envs.stop])  # local indices
            if rows.size:
                chunk = np.asarray(actions[envs.start + rows], dtype=np.float32)
                sent[w] = (self._submit(w, 'step', rows, chunk, group), rows)
        self._inflight[group] = sent

    def step_wait(self, group: int = 0) -> StepResult:
        """Wait for the actors of ``group``; write their rows; return views of the buffers."""
        sent, self._inflight[group] = self._inflight[group], None
        if sent is None:
            raise ValueError(f'step_wait({group}) without a matching step_send')
        answers = self._collect({w: ref for w, (ref, _) in sent.items()})
        buf, obs_dim = self._buf, self.spaces.obs_dim
        for w, packed in answers.items():  # (n, obs_dim + 3)
            rows = self._ranges[w].start + sent[w][1]
            buf['observations'][rows] = packed[:, :obs_dim]
            buf['rewards'][rows] = packed[:, obs_dim]
            buf['terminated'][rows] = packed[:, obs_dim + 1] != 0
            buf['truncated'][rows] = packed[:, obs_dim + 2] != 0
        return StepResult(buf['observations'], buf['rewards'], buf['terminated'],
                          buf['truncated'])

    def rollout(self, job) -> dict:
        """Run one episode per env of ``job`` on the actors that own them (one call each)."""
        parts = split_job(job, self._ranges)
        refs = {w: self._submit(w, 'rollout', part) for w, part in parts.items()}
        self._note_job(job, parts)
        widest = max(part.num_envs for part in parts.values())
        try:
            answers = self._collect(refs, self.rollout_timeout(self.step_timeout, job, widest))
        finally:
            self._job_tasks = {}
        return concat_results([answers[w] for w in sorted(answers)])

    # ------------------------------------------------------------------------------ internals
    def _connect(self) -> None:
        ray = self._ray = import_ray()
        self._lost = False
        self._owns_ray = connect(ray, self.address, self.init_kwargs) or self._owns_ray
        if self._watch is None:
            gcs = self._cluster_call(lambda: ray.get_runtime_context().gcs_address)
            self._watch = ClusterWatch(gcs, self.probe_timeout)

    def _submit(self, w: int, method: str, *args):
        """Call ``method`` of actor ``w``; return the reference of its answer."""
        return self._cluster_call(getattr(self._actors[w], method).remote, *args)

    def _create(self, w: int):
        cls = actor_class(self._ray)
        options = {'num_cpus': self.num_cpus_per_worker, 'max_restarts': 0,
                   'max_task_retries': 0}
        return self._cluster_call(cls.options(**options).remote, self._factory,
                                  len(self._ranges[w]), self.threads)

    def _await_spaces(self, workers, replacing: bool) -> list:
        """Wait until ``workers`` built their envs; return their spaces dicts in order."""
        ray, workers = self._ray, list(workers)
        refs = [self._submit(w, 'spaces') for w in workers]
        waiting = 'a replacement of lost worker actor' if replacing else 'worker actor'

        def log_wait(seconds, pending):
            late = [w for w, ref in zip(workers, refs) if ref in pending]
            logger.warning('ray backend: waiting for %s(s) %s to be placed on a node and '
                           'build their environments: %.0f s of %.0f s (--worker-start-timeout);'
                           ' the cluster has %s free', waiting, late, seconds,
                           self.start_timeout, self._cluster_call(ray.available_resources))

        ready = self._wait_ready(refs, self.start_timeout, log_wait)
        spaces = []
        for w, ref in zip(workers, refs):
            if ref not in ready:
                where = f'{self._cluster_call(ray.available_resources)} free'
                text = (f'Ray could not place worker actor {w} (num_cpus='
                        f'{self.num_cpus_per_worker}) or it did not build its environments '
                        f'within {self.start_timeout:.0f} s (--worker-start-timeout); the '
                        f'cluster has {where}')
                if replacing:  # the cluster answers: close() can still kill the actors
                    raise ClusterLost(text + ': nodes were lost. Restore the cluster and '
                                      'continue with --resume')
                raise RuntimeError(text + ': lower --workers or add nodes')
            try:
                answer = self._cluster_call(ray.get, ref)
            except ray.exceptions.RayActorError as err:
                raise RuntimeError(f'worker actor {w} died while building its environments: '
                                   f'{err}') from err
            if answer[0] != 'ok':
                raise RuntimeError(f'worker actor {w} failed while building its environments:'
                                   f'\n{answer[2]}')
            spaces.append(answer[1])
        return spaces

    def _wait_ready(self, refs: list, timeout: float, log_wait=None) -> set:
        """
        Return the refs of ``refs`` that are ready within ``timeout`` seconds.

        Waits in slices of ``WAIT_SLICE`` so that a lost head is noticed (ClusterLost) within
        ``probe_timeout``, not when Ray gives up on it; ``log_wait(seconds, pending)`` is
        called every ``LOG_EVERY`` seconds of waiting.
        """
        ray, start = self._ray, time.monotonic()
        deadline, next_log = start + timeout, start + LOG_EVERY
        while True:
            left = max(0.0, deadline - time.monotonic())
            ready, pending = self._cluster_call(ray.wait, refs, num_returns=len(refs),
                                                timeout=min(WAIT_SLICE, left))
            now = time.monotonic()
            if not pending or now >= deadline:
                return set(ready)
            if log_wait is not None and now >= next_log:
                log_wait(now - start, set(pending))
                next_log += LOG_EVERY

    def _cluster_call(self, fn, *args, **kwargs):
        """Call a Ray API function; a missing, broken or silent cluster raises ClusterLost."""
        if self._lost:
            raise ClusterLost('the Ray cluster was lost earlier in this run; restart it and '
                              'continue with --resume')
        try:
            return cluster_call(self._ray, self._watch, fn, *args, **kwargs)
        except ClusterLost:
            self._lost = True
            raise

    def _failure(self, w: int, message: str, env_index=None, task=None) -> WorkerFailure:
        envs = self._ranges[w]
        tasks = self._failed_tasks(w, envs)
        if env_index is not None:
            env_index += envs.start
            task = self._tasks[env_index] if task is None else task
            message = f'in env {env_index} (task {task!r}): {message}'
        return WorkerFailure(worker=w, env_ids=tuple(envs), tasks=tasks, message=message)

    def _await(self, refs: dict, timeout: float):
        """Wait for one answer per worker; return (payloads by worker, failures)."""
        ray = self._ray
        order = list(refs.items())
        answers, failures = {}, []
        deadline = time.monotonic() + timeout
        try:  # the common case in one call (a slow one waits in slices below)
            replies = self._cluster_call(ray.get, [ref for _, ref in order],
                                         timeout=min(timeout, WAIT_SLICE))
        except ray.exceptions.RayError:  # slow, died or hung: look at each answer on its own
            replies = None

        def take(w, answer):  # an actor's reply: its result, or the error it reported
            if answer[0] == 'ok':
                answers[w] = answer[1]
            else:
                failures.append(self._failure(w, answer[2].rstrip(), env_index=answer[1],
                                              task=task_of(answer)))

        if replies is not None:
            for (w, _), answer in zip(order, replies):
                take(w, answer)
            return answers, failures
        ready = self._wait_ready([ref for _, ref in order],
                                 max(0.0, deadline - time.monotonic()))
        for w, ref in order:
            if ref not in ready:
                failures.append(self._failure(
                    w, f'no reply within {timeout:.1f} s (hung); actor killed'))
                continue
            try:
                answer = self._cluster_call(ray.get, ref)
            except ray.exceptions.RayActorError as err:
                failures.append(self._failure(w, f'actor died: {one_line(err)}'))
                continue
            except ray.exceptions.RayError as err:  # e.g. its node died and the answer is lost
                failures.append(self._failure(w, f'{type(err).__name__}: {one_line(err)}'))
                continue
            take(w, answer)
        return answers, failures

    def _collect(self, refs: dict, timeout: float | None = None) -> dict:
        """Return the answers of ``refs``; on failure drain, replace and raise WorkerCrashed."""
        answers, failures = self._await(refs, timeout or self.step_timeout)
        if not failures:
            return answers
        failed = {f.worker for f in failures}
        for g in range(GROUPS):  # the other step group may still be in flight: drain it
            sent, self._inflight[g] = self._inflight[g], None
            healthy = {w: ref for w, (ref, _) in (sent or {}).items() if w not in failed}
            if healthy:
                more = self._await(healthy, self.step_timeout)[1]
                failures += more
                failed |= {f.worker for f in more}
        self._alive()
        for w in sorted(failed):
            self._replace(w)
        for f in failures:
            logger.info('ray backend: replaced worker actor %d: %s', f.worker, f.message)
        raise WorkerCrashed(failures)

    def _alive(self) -> None:
        """Raise ClusterLost when the head is silent or no node of the cluster is alive."""
        try:
            if self._watch is not None:
                self._watch.check()
            probe_nodes(self._ray, self.probe_timeout, self._watch)
        except ClusterLost:
            self._lost = True
            raise

    def _replace(self, w: int) -> None:
        self._kill(self._actors[w])
        self._actors[w] = self._create(w)
        self.replacements += 1
        spaces = self._await_spaces([w], replacing=True)[0]
        if EnvSpaces(**spaces) != self.spaces:
            raise RuntimeError(f'replacement worker actor {w} built different spaces: {spaces}')

    def _kill(self, actor) -> None:
        ray = self._ray
        if ray is None or self._lost or not ray.is_initialized():
            return  # with a lost cluster, killing would only wait for it
        try:
            ray.kill(actor, no_restart=True)
        except (ValueError, ray.exceptions.RayError, OSError):
            pass  # already gone, or its node is

    def _stop_actors(self) -> None:
        for actor in self._actors:
            self._kill(actor)
        self._actors, self._ranges, self._buf = [], [], {}
        self._inflight = [None] * GROUPS
