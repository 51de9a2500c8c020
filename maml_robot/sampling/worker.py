"""The loop run inside one worker process: it owns a slice of the environments."""

from multiprocessing import shared_memory
from multiprocessing.reduction import ForkingPickler
import signal
import traceback

from maml_robot.sampling.rollout import run_job
import numpy as np

# Per-step signals are two bytes (STEP + the group index); the answer is one byte. Anything
# longer is a pickled control message (IPC only, nothing is saved).
STEP = b's'
DONE = b'k'
GROUPS = 2  # envs are stepped in up to two interleaved groups (pipelining, see the sampler)

# name -> (dtype, trailing shape key); the leading dim is always the number of environments.
BUFFERS = {
    'observations': (np.float32, 'obs_dim'),
    'actions': (np.float32, 'act_dim'),
    'rewards': (np.float32, None),
    'terminated': (np.bool_, None),
    'truncated': (np.bool_, None),
    'active': (np.bool_, 'groups'),  # (E, GROUPS): step env e in group g
}


def buffer_shape(name: str, num_envs: int, obs_dim: int, act_dim: int) -> tuple:
    """Return the shape of shared buffer ``name``."""
    trailing = BUFFERS[name][1]
    dims = {'obs_dim': obs_dim, 'act_dim': act_dim, 'groups': GROUPS}
    return (num_envs,) if trailing is None else (num_envs, dims[trailing])


def attach_buffers(names: dict, num_envs: int, obs_dim: int, act_dim: int):
    """Map the shared-memory blocks ``names`` into numpy arrays; return (arrays, blocks)."""
    arrays, blocks = {}, []
    for key, shm_name in names.items():
        block = shared_memory.SharedMemory(name=shm_name)
        blocks.append(block)
        shape = buffer_shape(key, num_envs, obs_dim, act_dim)
        arrays[key] = np.ndarray(shape, dtype=BUFFERS[key][0], buffer=block.buf)
    return arrays, blocks


def _spaces_of(env) -> dict:
    obs_shape = env.observation_space.shape
    act = env.action_space
    if obs_shape is None or len(obs_shape) != 1 or act.shape is None or len(act.shape) != 1:
        raise ValueError(f'the sampler needs flat Box spaces; got observation {obs_shape} and '
                         f'action {act}')
    return {'obs_dim': int(obs_shape[0]), 'act_dim': int(act.shape[0]),
            'act_low': tuple(float(x) for x in act.low),
            'act_high': tuple(float(x) for x in act.high)}


class Worker:
    """The state of one worker: its environments and its view of the shared buffers."""

    def __init__(self, conn, env_factory, env_ids: range):
        self.conn = conn
        self.lo, self.hi = env_ids.start, env_ids.stop
        self.envs = [env_factory() for _ in env_ids]
        self.spaces = _spaces_of(self.envs[0])
        self.low = np.asarray(self.spaces['act_low'], dtype=np.float32)
        self.high = np.asarray(self.spaces['act_high'], dtype=np.float32)
        self.buf = None
        self.blocks = []
        self.current = None  # index (global) of the env being touched, for error reports
        self.tasks = [None] * len(self.envs)  # the task each env has now, for error reports

    def attach(self, names: dict, num_envs: int):
        self.buf, self.blocks = attach_buffers(names, num_envs, self.spaces['obs_dim'],
                                               self.spaces['act_dim'])

    def set_tasks(self, tasks):
        for i, (env, task) in enumerate(zip(self.envs, tasks)):
            self.current = self.lo + i
            self.tasks[i] = task
            env.unwrapped.set_task(task)

    def current_task(self):
        """Return the task of the env being touched (``None`` if none), for error reports."""
        return None if self.current is None else self.tasks[self.current - self.lo]

    def reset(self, seeds):
        for i, (env, seed) in enumerate(zip(self.envs, seeds)):
            self.current = self.lo + i
            obs, _ = env.reset(seed=int(seed))
            self.buf['observations'][self.lo + i] = obs
        self.buf['rewards'][self.lo:self.hi] = 0.0
        self.buf['terminated'][self.lo:self.hi] = False
        self.buf['truncated'][self.lo:self.hi] = False

    def step(self, group: int):
        """Step this worker's envs flagged in ``active[:, group]``; touch only their rows."""
        buf, lo = self.buf, self.lo
        rows = lo + np.flatnonzero(buf['active'][lo:self.hi, group])
        if rows.size == 0:
            return
        actions = np.clip(buf['actions'][rows], self.low, self.high)  # (n, act_dim)
        obs_out = buf['observations']
        rewards, terminated, truncated = [], [], []
        for e, action in zip(rows.tolist(), actions):
            self.current = e
            obs, reward, term, trunc, _ = self.envs[e - lo].step(action)
            obs_out[e] = obs
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
        buf['rewards'][rows] = rewards
        buf['terminated'][rows] = terminated
        buf['truncated'][rows] = truncated

    def rollout(self, job):
        """
        Run the job's episodes on this worker's envs (see :func:`run_job`).

        A job without tasks runs one episode on each of the first ``job.num_envs`` envs; a job
        with tasks may hold more episodes than envs and sets each episode's task first.
        """
        def mark(e):
            self.current = self.lo + e

        def retask(e, task):
            self.current = self.lo + e
            self.tasks[e] = task
        return run_job(self.envs, job, self.low, self.high, on_env=mark, on_task=retask)

    def close(self):
        for env in self.envs:
            try:
                env.close()
            except Exception:  # noqa: B902 - a broken env must not hide the original error
                pass
        self.buf = None
        for block in self.blocks:
            block.close()


def worker_main(conn, env_factory, env_ids: range, threads: int = 1) -> None:
    """
    Serve one pool worker until told to close or the pipe breaks.

    Protocol: on start the worker sends ``('spaces', dict)``; control messages are tuples
    ``('attach', names, num_envs)``, ``('set_tasks', tasks)``, ``('reset', seeds)``,
    ``('close',)`` answered by ``DONE``; ``('rollout', RolloutJob)`` answered by
    ``('result', arrays)``; a step of group g is the two bytes ``STEP + bytes([g])``
    answered by ``DONE``. Messages are answered in order.
    Any exception is sent back as ``('error', env_index, traceback_text, task)`` (the task that
    env had) and the worker exits.
    """
    # lazy: sampling/ imports no torch; a worker loads it only to pin its thread pool
    import torch  # torch threads fight the other workers
    torch.set_num_threads(threads)
    # Ctrl-C goes to the whole process group: the main process decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = None
    try:
        worker = Worker(conn, env_factory, env_ids)
        conn.send(('spaces', worker.spaces))
        while True:
            raw = conn.recv_bytes()
            if len(raw) == 2 and raw[:1] == STEP:
                worker.step(raw[1])
                conn.send_bytes(DONE)
                continue
            cmd = ForkingPickler.loads(raw)
            if cmd[0] == 'close':
                conn.send_bytes(DONE)
                break
            if cmd[0] == 'rollout':
                conn.send(('result', worker.rollout(cmd[1])))
                continue
            if cmd[0] == 'attach':
                worker.attach(cmd[1], cmd[2])
            elif cmd[0] == 'set_tasks':
                worker.set_tasks(cmd[1])
            elif cmd[0] == 'reset':
                worker.reset(cmd[1])
            else:
                raise ValueError(f'unknown worker command {cmd[0]!r}')
            conn.send_bytes(DONE)
    except (EOFError, BrokenPipeError):
        pass  # the main process went away or is shutting down: just exit
    except Exception:  # noqa: B902 - every error is reported to the main process, then we exit
        current = None if worker is None else worker.current
        task = None if worker is None else worker.current_task()
        try:
            conn.send(('error', current, traceback.format_exc(), task))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if worker is not None:
            worker.close()
