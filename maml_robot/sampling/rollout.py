"""
Whole episodes inside a worker: the policy runs where the envs are (``inference='workers'``).

With the default central inference the main process computes every action (one batched call per
step, on the GPU when there is one) and the workers only step. On a CPU-only machine the main
process then competes with the workers for the cores and every step is a round trip. Here the
main process sends each worker the policy (numpy arrays, a few kB per task) once per sampling
call; the worker runs its environments for the whole horizon with a numpy copy of the
:class:`maml_robot.policy.GaussianPolicy` forward pass and answers with the episodes.

Exploration noise is drawn per episode from a generator seeded by that episode's seed, and each
task's actions come from one matrix product of fixed shape (``slots`` rows, the episode in its
own row ``slot``) whatever subset of the task's episodes a worker holds: a BLAS result depends on
the shape and the row, so this keeps the episodes bit-identical for any number of workers and
either backend (local or Ray), and however a worker splits its episodes into batches.

A job may carry its tasks (``RolloutJob.tasks``, one per episode). Then it may hold more
episodes than the worker has environments: the worker runs them in consecutive batches on its
environments, setting each episode's task first, without waiting for the main process between
batches (:func:`run_job`).
"""

from dataclasses import dataclass, replace
import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

NOISE_STREAM = 0x6E6F6973  # 'nois': second word of every episode's noise seed


@dataclass(frozen=True)
class RolloutJob:
    """
    One sampling call's work for a pool: per-env task index and seed, the policy, the horizon.

    ``params`` maps each policy parameter name to a float32 array with a leading task dim ``B``
    (or 1 when every task shares the parameters). ``task_index[e]`` is env ``e``'s task: it
    picks the parameter row (row 0 when shared) and groups the envs of one batched policy call,
    so two tasks' episodes never share a row even when their parameters are the same.
    """

    params: dict
    """{name: (B or 1, ...) float32} in ``PolicyConfig.param_shapes`` naming."""
    obs_mean: np.ndarray
    """(obs_dim,) float32 normalization mean."""
    obs_std: np.ndarray
    """(obs_dim,) float32 normalization std."""
    obs_clip: float
    """Normalized observations are clipped to +-obs_clip (0: no clip)."""
    activation: str
    """'tanh', 'relu' or 'elu'."""
    num_hidden: int
    """Number of hidden layers."""
    horizon: int
    """Steps per episode (fewer when an env terminates or truncates)."""
    task_index: np.ndarray
    """(E,) int: the task of each env of the job (its ``params`` row unless shared)."""
    seeds: np.ndarray
    """(E,) int: reset seed of each env's episode (and root of its noise)."""
    slot: np.ndarray
    """(E,) int in [0, slots): the env's row in its task's batched policy call."""
    slots: int
    """Rows of every per-task policy call (the rollouts per task)."""
    tasks: tuple | None = None
    """One task per episode, set on an env before it runs that episode; ``None``: the envs
    already have their tasks (then the job has at most one episode per env)."""
    deterministic: bool = False
    """Act with the mean action (no exploration noise; log-probs 0), as
    ``maml_robot.meta.operators.MeanActionPolicy`` does in the main process."""

    def envs(self, lo: int, hi: int) -> 'RolloutJob':
        """Return the job of episodes ``lo..hi`` (an empty job when the range holds none)."""
        return replace(self, task_index=self.task_index[lo:hi], seeds=self.seeds[lo:hi],
                       slot=self.slot[lo:hi],
                       tasks=None if self.tasks is None else tuple(self.tasks[lo:hi]))

    @property
    def num_envs(self) -> int:
        """Return how many environments run an episode in this job."""
        return len(self.seeds)


def _activation(name):
    if name == 'tanh':
        return np.tanh
    if name == 'relu':
        return lambda x: np.maximum(x, 0.0)
    if name == 'elu':
        return lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
    raise ValueError(f'unknown activation {name!r}')


def mean_actions(job: RolloutJob, row: int, obs: np.ndarray) -> np.ndarray:
    """Return the policy's mean actions (n, act_dim) for ``obs`` (n, obs_dim), params ``row``."""
    p = job.params
    x = (obs - job.obs_mean) / job.obs_std
    if job.obs_clip > 0:
        x = np.clip(x, -job.obs_clip, job.obs_clip)
    act = _activation(job.activation)
    for i in range(job.num_hidden):
        x = act(x @ p[f'hidden.{i}.weight'][row].T + p[f'hidden.{i}.bias'][row])
    return x @ p['mean.weight'][row].T + p['mean.bias'][row]


def _reset(envs, job: RolloutJob, on_env) -> np.ndarray:
    """Reset env ``e`` with ``job.seeds[e]`` for every episode; return observations (E, obs)."""
    obs = []
    for e in range(job.num_envs):
        if on_env is not None:
            on_env(e)
        obs.append(envs[e].reset(seed=int(job.seeds[e]))[0])
    return np.asarray(obs, dtype=np.float32).reshape(job.num_envs, -1)


def _exploration(job: RolloutJob, act_dim: int) -> tuple:
    """
    Return ``(noise, log_std, row_of, std)`` of the job's episodes.

    ``noise`` (E, T, act_dim): standard normal draws from each episode's own generator (None
    for an empty job); ``log_std`` (B or 1, act_dim); ``row_of`` (E,): each episode's
    parameter row; ``std`` (E, act_dim): its standard deviation (zeros when deterministic).
    """
    noise = np.stack([np.random.default_rng([int(s), NOISE_STREAM]).standard_normal(
        (job.horizon, act_dim), dtype=np.float32) for s in job.seeds]) if job.num_envs else None
    log_std = np.asarray(job.params['log_std'], dtype=np.float32)  # (B or 1, act_dim)
    shared = log_std.shape[0] == 1                              # one parameter row for all
    row_of = np.zeros(job.num_envs, dtype=np.int64) if shared else np.asarray(job.task_index)
    std = np.exp(log_std)[row_of]                               # (E, act_dim) per env
    if job.deterministic:
        std = np.zeros_like(std)                                # actions = mean actions
    return noise, log_std, row_of, std


def _task_groups(job: RolloutJob, shared: bool) -> list:
    """Return per task ``(parameter row, its envs, their rows of the task's policy call)``."""
    return [(0 if shared else int(b), members, job.slot[members])
            for b, members in ((b, np.flatnonzero(job.task_index == b))
                               for b in np.unique(job.task_index))]


def run_episodes(envs, job: RolloutJob, low: np.ndarray, high: np.ndarray, on_env=None) -> dict:
    """
    Run one episode on each of ``envs`` (``job.num_envs`` of them) and return the arrays.

    Returns ``observations`` (E, T, obs_dim), ``actions`` (E, T, act_dim) as sampled (the
    env gets them clipped to [low, high]), ``rewards``, ``mask`` and ``log_probs`` (E, T; the
    Gaussian log-density of each sampled action under the policy that drew it, as
    ``GaussianPolicy.log_prob`` computes it); steps after an episode ended are zeros with mask
    0. ``on_env(e)`` is called before touching env ``e`` (error reports name it).

    The per-step loop stays whole in this function (the workers' hot loop: a call per step
    would cost time); only the once-per-call work around it (reset, noise, task groups,
    log-probs) is split out, at no measurable cost (benchmarks/results/sampler_speed.md).
    """
    num, horizon = job.num_envs, job.horizon
    act_dim = low.shape[0]
    obs = _reset(envs, job, on_env)
    obs_dim = obs.shape[1]
    out_obs = np.zeros((num, horizon, obs_dim), dtype=np.float32)
    out_act = np.zeros((num, horizon, act_dim), dtype=np.float32)
    rewards = np.zeros((num, horizon), dtype=np.float32)
    mask = np.zeros((num, horizon), dtype=np.float32)
    noise, log_std, row_of, std = _exploration(job, act_dim)
    groups = _task_groups(job, shared=log_std.shape[0] == 1)
    batch = np.zeros((job.slots, obs_dim), dtype=np.float32)   # one task's policy input
    means = np.zeros((num, horizon, act_dim), dtype=np.float32)
    alive = np.ones(num, dtype=bool)
    everyone = np.arange(num)
    for t in range(horizon):
        all_alive = alive.all()
        live = everyone if all_alive else np.flatnonzero(alive)
        if live.size == 0:
            break
        out_obs[live, t] = obs[live]
        mask[live, t] = 1.0
        for row, members, slots in groups:
            if not all_alive:
                keep = alive[members]
                members, slots = members[keep], slots[keep]
                if not members.size:
                    continue
            batch.fill(0.0)
            batch[slots] = obs[members]
            means[members, t] = mean_actions(job, row, batch)[slots]
        out_act[live, t] = means[live, t] + std[live] * noise[live, t]
        clipped = np.clip(out_act[:, t], low, high)      # (E, act_dim), one call for all
        step_obs, step_rewards = [], []
        for e in live.tolist():
            if on_env is not None:
                on_env(e)
            ob, reward, terminated, truncated, _ = envs[e].step(clipped[e])
            step_obs.append(ob)
            step_rewards.append(reward)
            if terminated or truncated:
                alive[e] = False
        obs[live] = step_obs
        rewards[live, t] = step_rewards
    log_probs = np.zeros((num, horizon), dtype=np.float32)
    if num and not job.deterministic:
        log_probs = _log_probs(out_act, means, std, log_std, row_of, mask)
    return {'observations': out_obs, 'actions': out_act, 'rewards': rewards, 'mask': mask,
            'log_probs': log_probs}


def _log_probs(actions, means, std, log_std, row_of, mask) -> np.ndarray:
    """Return log N(a; mean, std) summed over act_dim (E, T), as GaussianPolicy; 0 where masked."""
    z = (actions - means) / std[:, None]
    log_norm = (-log_std - np.float32(0.5 * LOG_2PI)).sum(-1)[row_of]   # (E,)
    return ((np.float32(-0.5) * z * z).sum(-1) + log_norm[:, None]) * mask


def batches(num_episodes: int, num_envs: int) -> list:
    """Return ``(lo, hi)`` episode ranges of near-equal size, none wider than ``num_envs``."""
    if num_envs < 1:
        raise ValueError(f'need >= 1 environment, got {num_envs}')
    count = max(1, math.ceil(num_episodes / num_envs))
    bounds = np.linspace(0, num_episodes, count + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def run_job(envs, job: RolloutJob, low: np.ndarray, high: np.ndarray, on_env=None,
            on_task=None) -> dict:
    """
    Run every episode of ``job`` on ``envs``; several batches when it carries its tasks.

    Without ``job.tasks`` this is :func:`run_episodes` (the envs must have their tasks). With
    them the episodes run in consecutive batches of at most ``len(envs)``; before a batch,
    ``on_task(e, task)`` is called (if given) and env ``e`` gets its episode's task. Returns
    the arrays of :func:`run_episodes` for all episodes, in job order.
    """
    if job.tasks is None:
        if job.num_envs > len(envs):
            raise ValueError(f'the job has {job.num_envs} episodes for {len(envs)} environments '
                             'and no tasks: give the job its tasks to run it in batches')
        return run_episodes(envs, job, low, high, on_env=on_env)
    if len(job.tasks) != job.num_envs:
        raise ValueError(f'the job has {job.num_envs} episodes but {len(job.tasks)} tasks')
    parts = []
    for lo, hi in batches(job.num_envs, len(envs)):
        for e, task in enumerate(job.tasks[lo:hi]):
            if on_task is not None:
                on_task(e, task)
            envs[e].unwrapped.set_task(task)
        parts.append(run_episodes(envs, job.envs(lo, hi), low, high, on_env=on_env))
    return concat_results(parts)


def concat_results(parts) -> dict:
    """Concatenate per-worker results (in env order) along the env dim."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
