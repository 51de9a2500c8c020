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
either backend (local or Ray).
"""

from dataclasses import dataclass, replace

import numpy as np

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

    def envs(self, lo: int, hi: int) -> 'RolloutJob':
        """Return the job of envs ``lo..hi`` (an empty job when the range holds none)."""
        return replace(self, task_index=self.task_index[lo:hi], seeds=self.seeds[lo:hi],
                       slot=self.slot[lo:hi])

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


def run_episodes(envs, job: RolloutJob, low: np.ndarray, high: np.ndarray, on_env=None) -> dict:
    """
    Run one episode on each of ``envs`` (``job.num_envs`` of them) and return the arrays.

    Returns ``observations`` (E, T, obs_dim), ``actions`` (E, T, act_dim) as sampled (the
    env gets them clipped to [low, high]), ``rewards`` and ``mask`` (E, T); steps after an
    episode ended are zeros with mask 0. ``on_env(e)`` is called before touching env ``e``
    (error reports name it).
    """
    num, horizon = job.num_envs, job.horizon
    act_dim = low.shape[0]
    obs = []
    for e in range(num):
        if on_env is not None:
            on_env(e)
        obs.append(envs[e].reset(seed=int(job.seeds[e]))[0])
    obs = np.asarray(obs, dtype=np.float32).reshape(num, -1)
    obs_dim = obs.shape[1]
    out_obs = np.zeros((num, horizon, obs_dim), dtype=np.float32)
    out_act = np.zeros((num, horizon, act_dim), dtype=np.float32)
    rewards = np.zeros((num, horizon), dtype=np.float32)
    mask = np.zeros((num, horizon), dtype=np.float32)
    noise = np.stack([np.random.default_rng([int(s), NOISE_STREAM]).standard_normal(
        (horizon, act_dim), dtype=np.float32) for s in job.seeds]) if num else None
    std = np.exp(job.params['log_std']).astype(np.float32)      # (B or 1, act_dim)
    shared = std.shape[0] == 1                                  # one parameter row for all
    rows = {int(b): np.flatnonzero(job.task_index == b) for b in np.unique(job.task_index)}
    batch = np.zeros((job.slots, obs_dim), dtype=np.float32)   # one task's policy input
    alive = np.ones(num, dtype=bool)
    for t in range(horizon):
        live = np.flatnonzero(alive)
        if live.size == 0:
            break
        out_obs[live, t] = obs[live]
        mask[live, t] = 1.0
        for b, members in rows.items():
            members = members[alive[members]]
            if members.size:
                batch.fill(0.0)
                batch[job.slot[members]] = obs[members]
                row = 0 if shared else b
                mean = mean_actions(job, row, batch)[job.slot[members]]
                out_act[members, t] = mean + std[row] * noise[members, t]
        clipped = np.clip(out_act[:, t], low, high)      # (E, act_dim), one call for all
        for e in live.tolist():
            if on_env is not None:
                on_env(e)
            ob, reward, terminated, truncated, _ = envs[e].step(clipped[e])
            obs[e] = ob
            rewards[e, t] = reward
            if terminated or truncated:
                alive[e] = False
    return {'observations': out_obs, 'actions': out_act, 'rewards': rewards, 'mask': mask}


def concat_results(parts) -> dict:
    """Concatenate per-worker results (in env order) along the env dim."""
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
