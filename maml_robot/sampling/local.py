"""The default worker pool: local processes that share numpy buffers with the main process."""

import multiprocessing as mp
from multiprocessing import connection, shared_memory
from multiprocessing.reduction import ForkingPickler
import time
from typing import Any, Callable, Sequence
import weakref

from maml_robot.sampling.backend import (EnvSpaces, split_envs, split_job, StepResult,
                                         WorkerBackend, WorkerCrashed, WorkerFailure)
from maml_robot.sampling.rollout import concat_results
from maml_robot.sampling.worker import (buffer_shape, BUFFERS, DONE, GROUPS, STEP,
                                        worker_main)
import numpy as np


def default_start_method() -> str:
    """Return 'forkserver' where available, else 'spawn' (PyBullet and torch dislike fork)."""
    return 'forkserver' if 'forkserver' in mp.get_all_start_methods() else 'spawn'


def _exit_text(code) -> str:
    if code is None:
        return 'process is gone'
    if code < 0:
        return f'process killed by signal {-code} (exit code {code})'
    return f'process exited with code {code}'


def _release(procs: list, blocks: list) -> None:
    for proc in procs:
        if proc is not None and proc.is_alive():
            proc.kill()
            proc.join(timeout=5.0)
    for block in blocks:
        block.close()
        try:
            block.unlink()
        except FileNotFoundError:
            pass


class ProcessBackend(WorkerBackend):
    """
    Environments in ``num_workers`` local processes, stepped through shared-memory arrays.

    Observations, actions, rewards and done flags live in ``multiprocessing.shared_memory``
    blocks mapped as numpy arrays on both sides; a step costs one byte per worker each way on a
    pipe. Each worker owns a contiguous slice of the environments.

    :param num_workers: worker processes (fewer are used when there are fewer environments).
    :param start_method: 'forkserver' (default where available) or 'spawn'; never 'fork'.
    :param start_timeout: seconds a worker may take to build its environments.
    :param step_timeout: seconds a worker may take for one reset/step/set_tasks call.
    :param threads: torch threads in each worker.
    """

    def __init__(self, num_workers: int, *, start_method: str | None = None,
                 start_timeout: float = 120.0, step_timeout: float = 60.0, threads: int = 1):
        if num_workers < 1:
            raise ValueError(f'num_workers must be >= 1, got {num_workers}')
        method = start_method or default_start_method()
        if method not in ('spawn', 'forkserver'):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver', got {method!r} "
                             '(fork breaks PyBullet and torch threads)')
        if start_timeout <= 0 or step_timeout <= 0:
            raise ValueError('start_timeout and step_timeout must be > 0 seconds')
        self.num_workers = num_workers
        self.start_timeout = start_timeout
        self.step_timeout = step_timeout
        self.threads = threads
        self._ctx = mp.get_context(method)
        self._procs, self._conns, self._ranges = [], [], []
        self._blocks, self._buf = [], {}
        self._tasks = []
        self._busy = [None] * GROUPS  # workers signalled per step group, None when idle
        self._outstanding = []        # unanswered messages per worker
        self._results = {}            # rollout answers by worker
        self._job_tasks = {}          # worker -> the tasks of its part of a running job
        self._factory = None
        self.spaces = None
        self._finalizer = None

    # ----------------------------------------------------------------------------- lifecycle
    @property
    def num_envs(self) -> int:
        """Return the number of environments in the pool (0 before ``start``)."""
        return self._ranges[-1].stop if self._ranges else 0

    def start(self, env_factory: Callable[[], Any], num_envs: int) -> EnvSpaces:
        """Start the workers and build ``num_envs`` environments; return their spaces."""
        if num_envs < 1:
            raise ValueError(f'num_envs must be >= 1, got {num_envs}')
        self.close()
        self._factory = env_factory
        self._ranges = split_envs(num_envs, min(self.num_workers, num_envs))
        self._procs = [None] * len(self._ranges)
        self._conns = [None] * len(self._ranges)
        self._tasks = [None] * num_envs
        self._outstanding = [0] * len(self._ranges)
        self._busy = [None] * GROUPS
        self._finalizer = weakref.finalize(self, _release, self._procs, self._blocks)
        for w in range(len(self._ranges)):
            self._launch(w)
        spaces = [self._await_spaces(w) for w in range(len(self._ranges))]
        if any(s != spaces[0] for s in spaces):
            raise ValueError(f'env_factory built environments with different spaces: {spaces}')
        self.spaces = EnvSpaces(**spaces[0])
        self._allocate(num_envs)
        for w in range(len(self._ranges)):
            self._send(w, ('attach', self._shm_names(), num_envs))
        self._collect(range(len(self._ranges)), self.start_timeout)
        return self.spaces

    def close(self) -> None:
        """Stop every worker and free the shared memory; safe to call twice."""
        for w, conn in enumerate(self._conns):
            if conn is not None and self._procs[w].is_alive():
                try:
                    conn.send(('close',))
                except (BrokenPipeError, OSError):
                    pass
        for proc in self._procs:
            if proc is not None:
                proc.join(timeout=5.0)
        if self._finalizer is not None:
            self._finalizer()  # kills stragglers, unlinks the blocks
            self._finalizer = None
        for conn in self._conns:
            if conn is not None:
                conn.close()
        self._procs, self._conns, self._ranges, self._buf = [], [], [], {}
        self._blocks = []

    # ---------------------------------------------------------------------------- operations
    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Set one task per environment; the pool remembers them for crash reports."""
        if len(tasks) != self.num_envs:
            raise ValueError(f'set_tasks needs one task per environment ({self.num_envs}), '
                             f'got {len(tasks)}')
        self._tasks = list(tasks)
        for w, envs in enumerate(self._ranges):
            self._send(w, ('set_tasks', self._tasks[envs.start:envs.stop]))
        self._collect(range(len(self._ranges)), self.step_timeout)

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        """Reset every environment with its seed; return the shared observations (E, obs_dim)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f'reset needs one seed per environment ({self.num_envs}), '
                             f'got {len(seeds)}')
        seeds = [int(s) for s in seeds]
        for w, envs in enumerate(self._ranges):
            self._send(w, ('reset', seeds[envs.start:envs.stop]))
        self._collect(range(len(self._ranges)), self.step_timeout)
        return self._buf['observations']

    def step_send(self, actions: np.ndarray, active: np.ndarray, group: int = 0) -> None:
        """Write the active rows of ``actions`` and signal the workers that own them."""
        if group not in range(GROUPS) or self._busy[group] is not None:
            raise ValueError(f'group must be one of {tuple(range(GROUPS))} and not in flight; '
                             f'got {group}')
        buf = self._buf
        active = np.asarray(active, dtype=bool)
        buf['actions'][active] = actions[active]
        buf['active'][:, group] = active
        busy = [w for w, envs in enumerate(self._ranges) if active[envs.start:envs.stop].any()]
        signal = STEP + bytes([group])
        for w in busy:
            self._conns[w].send_bytes(signal)
            self._outstanding[w] += 1
        self._busy[group] = busy

    def step_wait(self, group: int = 0) -> StepResult:
        """Wait until the workers stepped ``group``; return views of the shared buffers."""
        busy, self._busy[group] = self._busy[group], None
        if busy is None:
            raise ValueError(f'step_wait({group}) without a matching step_send')
        self._collect(busy, self.step_timeout)
        buf = self._buf
        return StepResult(buf['observations'], buf['rewards'], buf['terminated'],
                          buf['truncated'])

    def rollout(self, job) -> dict:
        """Run one episode per env of ``job`` in the workers that own them; gather the arrays."""
        parts = split_job(job, self._ranges)
        for w, part in parts.items():
            self._send(w, ('rollout', part))
        busy = list(parts)
        self._results = {}
        self._note_job(job, parts)
        widest = max(part.num_envs for part in parts.values())
        try:
            self._collect(busy, self.rollout_timeout(self.step_timeout, job, widest))
        finally:
            self._job_tasks = {}
        return concat_results([self._results.pop(w) for w in busy])

    # ------------------------------------------------------------------------------ internals
    def _launch(self, w: int):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, name=f'maml-robot-worker-{w}', daemon=True,
                                 args=(child, self._factory, self._ranges[w], self.threads))
        proc.start()
        child.close()
        self._procs[w], self._conns[w] = proc, parent
        self._outstanding[w] = 0

    def _await_spaces(self, w: int) -> dict:
        conn, proc = self._conns[w], self._procs[w]
        ready = connection.wait([conn, proc.sentinel], timeout=self.start_timeout)
        if not ready:
            raise RuntimeError(f'worker {w} did not build its environments within '
                               f'{self.start_timeout:.0f} s (start_timeout)')
        if not conn.poll():
            raise RuntimeError(f'worker {w} died while building its environments: '
                               f'{_exit_text(proc.exitcode)}')
        msg = conn.recv()
        if msg[0] != 'spaces':
            raise RuntimeError(f'worker {w} failed while building its environments:\n{msg[2]}')
        return msg[1]

    def _allocate(self, num_envs: int) -> None:
        for key, (dtype, _) in BUFFERS.items():
            shape = buffer_shape(key, num_envs, self.spaces.obs_dim, self.spaces.act_dim)
            nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            block = shared_memory.SharedMemory(create=True, size=nbytes)
            self._blocks.append(block)
            self._buf[key] = np.ndarray(shape, dtype=dtype, buffer=block.buf)
            self._buf[key].fill(0)

    def _shm_names(self) -> dict:
        return {key: block.name for key, block in zip(BUFFERS, self._blocks)}

    def _send(self, w: int, message) -> None:
        self._outstanding[w] += 1
        try:
            self._conns[w].send(message)
        except (BrokenPipeError, OSError):
            pass  # the worker is dead; _collect reports it

    def _failure(self, w: int, message: str, env_index=None, task=None) -> WorkerFailure:
        envs = self._ranges[w]
        tasks = self._failed_tasks(w, envs)
        if env_index is not None:
            task = self._tasks[env_index] if task is None else task
            message = f'in env {env_index} (task {task!r}): {message}'
        return WorkerFailure(worker=w, env_ids=tuple(envs), tasks=tasks, message=message)

    def _read(self, w: int):
        """Return None when worker ``w`` answered DONE, else its WorkerFailure."""
        conn = self._conns[w]
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            self._procs[w].join(timeout=1.0)
            return self._failure(w, _exit_text(self._procs[w].exitcode))
        self._outstanding[w] -= 1
        if raw == DONE:
            return None
        msg = ForkingPickler.loads(raw)
        if msg[0] == 'result':
            self._results[w] = msg[1]
            return None
        if msg[0] == 'error':
            return self._failure(w, msg[2].rstrip(), env_index=msg[1],
                                 task=msg[3] if len(msg) > 3 else None)
        return self._failure(w, f'unexpected message {msg[0]!r}')

    def _await(self, workers, timeout: float) -> list:
        """Read one answer from each of ``workers``; return the failures (none is lost)."""
        pending = set(workers)
        failures = []
        deadline = time.monotonic() + timeout
        while pending:
            waitables = {}
            for w in pending:
                waitables[self._conns[w]] = w
                waitables[self._procs[w].sentinel] = w
            ready = connection.wait(list(waitables), timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                for w in sorted(pending):
                    failures.append(self._failure(
                        w, f'no reply within {timeout:.1f} s (hung); worker killed'))
                break
            for w in sorted({waitables[obj] for obj in ready}):
                if self._conns[w].poll():
                    failure = self._read(w)
                else:  # sentinel: the process ended without a word
                    self._procs[w].join(timeout=1.0)
                    failure = self._failure(w, _exit_text(self._procs[w].exitcode))
                pending.discard(w)
                if failure is not None:
                    failures.append(failure)
        return failures

    def _collect(self, workers, timeout: float) -> None:
        """Wait for DONE from ``workers``; on failure drain, replace and raise WorkerCrashed."""
        failures = self._await(workers, timeout)
        if not failures:
            return
        failed = {f.worker for f in failures}
        # answers still owed by healthy workers (e.g. the other step group) would desync the
        # pipes: read them before the caller re-runs the batch
        while True:
            owing = [w for w, n in enumerate(self._outstanding) if n > 0 and w not in failed]
            if not owing:
                break
            more = self._await(owing, timeout)
            failures += more
            failed |= {f.worker for f in more}
        self._busy = [None] * GROUPS
        for w in sorted(failed):
            self._replace(w)
        raise WorkerCrashed(failures)

    def _replace(self, w: int) -> None:
        proc = self._procs[w]
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5.0)
        self._conns[w].close()
        self._launch(w)
        spaces = self._await_spaces(w)
        if EnvSpaces(**spaces) != self.spaces:
            raise RuntimeError(f'replacement worker {w} built different spaces: {spaces}')
        self._send(w, ('attach', self._shm_names(), self.num_envs))
        self._collect([w], self.start_timeout)
