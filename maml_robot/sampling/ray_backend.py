"""Rollout workers as Ray actors: the sampler's worker pool spread over a Ray cluster."""

import logging
import os
import threading
import time
import traceback
from typing import Any, Callable, Sequence

from maml_robot.sampling.backend import (EnvSpaces, SamplerError, split_envs, split_job,
                                         StepResult, WorkerBackend, WorkerCrashed, WorkerFailure)
from maml_robot.sampling.rollout import concat_results
from maml_robot.sampling.worker import buffer_shape, BUFFERS, GROUPS, Worker
import numpy as np

logger = logging.getLogger(__name__)

BACKENDS = ('local', 'ray')
INSTALL_HINT = ("pip install 'maml_robot[ray]' (or pip install ray==2.60.0); the default "
                '--backend local needs no Ray')


class ClusterLost(SamplerError):
    """
    The driver lost its Ray cluster: head gone, Ray shut down, or no node left for a worker.

    A :class:`~maml_robot.sampler.SamplerError` (so a trainer that saves its state on
    ``SamplerError`` does so here too), but a distinct type: retrying cannot help, the cluster
    must be brought back (``ray start``) and training continued with ``--resume``.
    """


def import_ray():
    """Import Ray on demand; raise an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f'the Ray backend needs Ray, which is not installed: {INSTALL_HINT}'
                          ) from err
    return ray


# ---------------------------------------------------------------------------- the actor
class EnvActor:
    """
    The environments of one Ray actor (the class is wrapped with ``ray.remote`` on first use).

    It holds the very worker the local pool runs (:class:`maml_robot.sampling.worker.Worker`)
    with private numpy buffers instead of shared memory, so both backends clip and step
    alike. Every method answers ``('ok', payload)`` or ``('error', env_index, traceback[, task])``;
    after an error the driver replaces the actor.
    """

    def __init__(self, env_factory: Callable[[], Any], num_envs: int, threads: int = 1):
        import torch  # only to pin its thread pool: torch threads fight the other workers
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


def _task_of(answer: tuple):
    """Return the task in an actor's error answer (``None`` in a three-part answer)."""
    return answer[3] if len(answer) > 3 else None


def _short(err) -> str:
    """Return Ray's multi-line error text as one line: its first and last lines."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return ' '.join(lines[:1] + lines[-1:]) if len(lines) > 1 else ''.join(lines)


def _actor_class(ray):
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = ray.remote(EnvActor)
    return _ACTOR_CLASS


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
    :param probe_timeout: seconds to wait for the cluster to say which nodes are alive after
        a worker failed; no answer means the cluster is lost.
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
        ray = import_ray()
        self._ray = ray
        if ray.is_initialized():
            return
        kwargs = {'include_dashboard': False, 'address': self.address, **self.init_kwargs}
        if self.address is not None:
            kwargs.pop('num_cpus', None)  # a running cluster has its own resources
        try:
            ray.init(**kwargs)
        except ConnectionError as err:
            raise ClusterLost(f'could not reach the Ray cluster at {self.address!r}: {err}. '
                              'Start it with `ray start --head` (see docs/RAY.md) or pass '
                              '--ray-address HOST:PORT of its head') from err
        self._owns_ray = True

    def _submit(self, w: int, method: str, *args):
        """Call ``method`` of actor ``w``; return the reference of its answer."""
        return self._cluster_call(getattr(self._actors[w], method).remote, *args)

    def _create(self, w: int):
        cls = _actor_class(self._ray)
        options = {'num_cpus': self.num_cpus_per_worker, 'max_restarts': 0,
                   'max_task_retries': 0}
        return cls.options(**options).remote(self._factory, len(self._ranges[w]), self.threads)

    def _await_spaces(self, workers, replacing: bool) -> list:
        """Wait until ``workers`` built their envs; return their spaces dicts in order."""
        ray = self._ray
        refs = [self._submit(w, 'spaces') for w in workers]
        ready, _ = self._cluster_call(ray.wait, refs, num_returns=len(refs),
                                      timeout=self.start_timeout)
        spaces = []
        for w, ref in zip(workers, refs):
            if ref not in ready:
                where = f'{self._cluster_call(ray.available_resources)} free'
                text = (f'Ray could not place worker actor {w} (num_cpus='
                        f'{self.num_cpus_per_worker}) or it did not build its environments '
                        f'within {self.start_timeout:.0f} s (start_timeout); the cluster has '
                        f'{where}')
                if replacing:
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

    def _cluster_call(self, fn, *args, **kwargs):
        """Call a Ray API function; turn a missing or broken connection into ClusterLost."""
        ray = self._ray
        if not ray.is_initialized():
            raise ClusterLost('Ray was shut down in this process; the worker actors are gone. '
                              'Continue with --resume once the cluster is back')
        try:
            return fn(*args, **kwargs)
        except (ConnectionError, ray.exceptions.RaySystemError) as err:
            raise ClusterLost(f'lost the connection to the Ray cluster: {err}. Continue with '
                              '--resume once the cluster is back (docs/RAY.md)') from err

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
        try:  # the common case in one call
            replies = self._cluster_call(ray.get, [ref for _, ref in order], timeout=timeout)
        except ray.exceptions.RayError:  # died or hung: look at each answer on its own below
            replies = None

        def take(w, answer):  # an actor's reply: its result, or the error it reported
            if answer[0] == 'ok':
                answers[w] = answer[1]
            else:
                failures.append(self._failure(w, answer[2].rstrip(), env_index=answer[1],
                                              task=_task_of(answer)))

        if replies is not None:
            for (w, _), answer in zip(order, replies):
                take(w, answer)
            return answers, failures
        ready, _ = self._cluster_call(ray.wait, [ref for _, ref in order],
                                      num_returns=len(order),
                                      timeout=max(0.0, deadline - time.monotonic()))
        ready = set(ready)
        for w, ref in order:
            if ref not in ready:
                failures.append(self._failure(
                    w, f'no reply within {timeout:.1f} s (hung); actor killed'))
                continue
            try:
                answer = self._cluster_call(ray.get, ref)
            except ray.exceptions.RayActorError as err:
                failures.append(self._failure(w, f'actor died: {_short(err)}'))
                continue
            except ray.exceptions.RayError as err:  # e.g. its node died and the answer is lost
                failures.append(self._failure(w, f'{type(err).__name__}: {_short(err)}'))
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
        self._check_cluster()
        for w in sorted(failed):
            self._replace(w)
        for f in failures:
            logger.info('ray backend: replaced worker actor %d: %s', f.worker, f.message)
        raise WorkerCrashed(failures)

    def _check_cluster(self) -> None:
        """Raise ClusterLost when no node of the cluster answers as alive."""
        result = {}

        def probe():
            try:
                result['nodes'] = self._ray.nodes()
            except Exception as err:  # noqa: B902 - any failure to ask means no cluster
                result['error'] = err

        thread = threading.Thread(target=probe, name='ray-cluster-probe', daemon=True)
        thread.start()
        thread.join(self.probe_timeout)
        if 'nodes' not in result:
            why = result.get('error', f'no answer within {self.probe_timeout:.0f} s')
            raise ClusterLost(f'the Ray cluster does not answer ({why}); the worker actors are '
                              'lost. Restart the cluster and continue with --resume')
        if not any(node.get('Alive') for node in result['nodes']):
            raise ClusterLost('no node of the Ray cluster is alive; restart the cluster and '
                              'continue with --resume')

    def _replace(self, w: int) -> None:
        self._kill(self._actors[w])
        self._actors[w] = self._create(w)
        self.replacements += 1
        spaces = self._await_spaces([w], replacing=True)[0]
        if EnvSpaces(**spaces) != self.spaces:
            raise RuntimeError(f'replacement worker actor {w} built different spaces: {spaces}')

    def _kill(self, actor) -> None:
        ray = self._ray
        if ray is None or not ray.is_initialized():
            return
        try:
            ray.kill(actor, no_restart=True)
        except (ValueError, ray.exceptions.RayError, ConnectionError):
            pass  # already gone

    def _stop_actors(self) -> None:
        for actor in self._actors:
            self._kill(actor)
        self._actors, self._ranges, self._buf = [], [], {}
        self._inflight = [None] * GROUPS


# ------------------------------------------------------------------------ choosing a backend
def add_backend_arguments(parser) -> None:
    """Declare ``--backend`` and ``--ray-address`` on an argparse parser."""
    parser.add_argument('--backend', default='local', choices=BACKENDS,
                        help='where rollout workers run: local processes (default) or Ray '
                             "actors (needs pip install 'maml_robot[ray]')")
    parser.add_argument('--ray-address', default=None,
                        help='with --backend ray: auto (the cluster started here with '
                             '`ray start --head`) or HOST:PORT of a head node; default: a '
                             'private Ray instance on this machine')


def make_backend(name: str, num_workers: int, *, ray_address: str | None = None,
                 step_timeout: float = 60.0, **kwargs) -> WorkerBackend:
    """
    Return the worker pool ``name`` ('local' or 'ray') with ``num_workers`` workers.

    ``ray_address`` only goes with 'ray'. Extra keyword arguments go to the backend's
    constructor. Ray is imported here (and fails with an install hint) only for 'ray'.
    """
    if name == 'local':
        if ray_address is not None:
            raise ValueError('--ray-address needs --backend ray')
        from maml_robot.sampling.local import ProcessBackend
        return ProcessBackend(num_workers, step_timeout=step_timeout, **kwargs)
    if name == 'ray':
        import_ray()  # fail now, with the install hint, not at the first rollout
        return RayBackend(num_workers, address=ray_address, step_timeout=step_timeout,
                          **kwargs)
    raise ValueError(f'backend must be one of {BACKENDS}, got {name!r}')
