"""Batched rollouts for meta-RL: many envs in worker processes, one policy call per step."""

from dataclasses import dataclass
import logging
from typing import Any, Callable, Sequence

from maml_robot.envs import MetaRobotEnv
from maml_robot.episodes import Episodes
# SamplerError lives with the worker backends (which raise it too) and is re-exported here
from maml_robot.sampling.backend import SamplerError, WorkerBackend, WorkerCrashed
from maml_robot.sampling.local import ProcessBackend
from maml_robot.sampling.rollout import RolloutJob
from maml_robot.sampling.worker import GROUPS
from maml_robot.scenario import load_scenario
import numpy as np
import torch

logger = logging.getLogger(__name__)
INFERENCE = ('central', 'workers')


def resolve_device(device: str) -> torch.device:
    """Map 'auto' | 'cpu' | 'cuda' (or 'cuda:N') to a torch device; 'auto' prefers CUDA."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cpu' or device.startswith('cuda'):
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise ValueError(f'device {device!r} requested but torch.cuda.is_available() is '
                             'False; use --device cpu or auto')
        return torch.device(device)
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


@dataclass(frozen=True)
class ScenarioEnvFactory:
    """Builds the gymnasium env of a scenario inside a worker (picklable: holds only a name)."""

    scenario: object
    """A shipped scenario name, the path of a scenario YAML or a snapshot dict."""

    def __call__(self):
        """Return a new ``MetaRobotEnv`` for the scenario."""
        return MetaRobotEnv(self.scenario)


class Sampler:
    """
    Collects ``rollouts_per_task`` episodes of ``horizon`` steps for each of ``B`` tasks.

    The environments of a wave of tasks step together; each step the main process computes
    their actions in one batched (vmapped over tasks) policy call on ``device``. Every
    ``sample`` call resets the environments with seeds derived from ``seed`` and a call
    counter (or an explicit ``seed=``), so the same seed gives the same episodes. A crashed
    worker is reported (see ``crash_reports``), replaced, and the batch re-sampled with the
    same seeds.

    :param scenario: a ``Scenario``, or a shipped scenario name or YAML path; used to build envs
        in the workers unless ``env_factory`` is given.
    :param num_workers: worker processes for the default local backend.
    :param seed: root seed of every episode this sampler collects.
    :param device: 'auto', 'cpu' or 'cuda' for the batched policy call.
    :param horizon: steps per episode (default: the scenario's ``episode_steps``).
    :param env_factory: picklable zero-argument callable building one env (overrides scenario).
    :param backend: a :class:`WorkerBackend` (default: :class:`ProcessBackend`).
    :param max_retries: re-samples of a batch after worker crashes before giving up.
    :param step_timeout: seconds any worker may take to answer one call.
    :param pipeline: step even and odd rollouts as two groups so that the policy call of one
        overlaps the env steps of the other (changes the noise order, not the statistics).
        Worth it only when a CPU core is left for the main process (more cores than
        workers); on a fully used machine the overlap only adds contention (see
        benchmarks/results/sampler_speed.md).
    :param max_envs: environments alive at once (each PyBullet client costs ~30 MB): the tasks
        are rolled out in waves of ``max(1, max_envs // N)`` tasks. Results depend on the
        seed, ``N`` and ``max_envs``, never on the number of workers.
    :param inference: 'central' (default): the main process computes every action, one
        batched call per step on ``device`` (the GPU when there is one), and the workers only
        step; 'workers': each worker gets the policy and its share of all the episodes once
        per call and runs them to the end with a numpy copy of the policy, in batches of at
        most its envs (no per-step round trip and no waves; fastest on a CPU-only machine,
        see ``maml_robot.sampling.rollout``). The two draw different exploration noise (same
        statistics); neither depends on the number of workers or on the backend, and
        'workers' results do not depend on ``max_envs`` either. A policy whose
        ``deterministic`` attribute is true (``MeanActionPolicy``) acts with its mean action,
        without noise, in both.
    """

    def __init__(self, scenario=None, num_workers: int = 1, seed: int = 0, *,
                 device: str = 'cpu', horizon: int | None = None,
                 env_factory: Callable[[], Any] | None = None,
                 backend: WorkerBackend | None = None, max_retries: int = 2,
                 step_timeout: float = 60.0, pipeline: bool = False,
                 max_envs: int = 64, inference: str = 'central'):
        if env_factory is None:
            if scenario is None:
                raise ValueError('Sampler needs a scenario or an env_factory')
            name = scenario if isinstance(scenario, str) else str(scenario.path)
            env_factory = ScenarioEnvFactory(name)
            if horizon is None and not isinstance(scenario, str):
                horizon = int(scenario.episode_steps)
            elif horizon is None:
                horizon = int(load_scenario(scenario).episode_steps)
        if horizon is None or horizon < 1:
            raise ValueError(f'horizon must be a positive number of steps, got {horizon}')
        if max_retries < 0:
            raise ValueError(f'max_retries must be >= 0, got {max_retries}')
        if max_envs < 1:
            raise ValueError(f'max_envs must be >= 1, got {max_envs}')
        if inference not in INFERENCE:
            raise ValueError(f'inference must be one of {INFERENCE}, got {inference!r}')
        self.inference = inference
        self.max_envs = int(max_envs)
        self.env_factory = env_factory
        self.horizon = int(horizon)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.backend = backend if backend is not None else ProcessBackend(
            num_workers, step_timeout=step_timeout)
        self.max_retries = max_retries
        self.calls = 0
        """How many ``sample`` calls drew their seed from the counter (part of resume state)."""
        self.crash_reports = []
        """Every :class:`WorkerFailure` seen so far, oldest first."""
        self.env_steps = 0
        """Environment steps taken so far (valid steps only)."""
        self.pipeline = pipeline

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Stop the workers."""
        self.backend.close()

    def sample(self, policy, params_b: dict, tasks: Sequence[Any], rollouts_per_task: int, *,
               seed=None):
        """
        Return ``Episodes`` with shapes (B, N, T, ...) for ``B = len(tasks)`` tasks.

        ``params_b``: the policy parameters with a leading ``B`` dim on every tensor (use
        ``expand_params`` for the meta-parameters). ``seed``: an int or ``SeedSequence`` for
        this call; default ``SeedSequence([sampler seed, call counter])``.
        """
        num_tasks = len(tasks)
        if num_tasks < 1 or rollouts_per_task < 1:
            raise ValueError(f'need >= 1 task and >= 1 rollout per task, got {num_tasks} tasks '
                             f'and {rollouts_per_task} rollouts')
        for name, value in params_b.items():
            if value.shape[0] != num_tasks:
                raise ValueError(f'params_b[{name!r}] has leading dim {value.shape[0]}; it '
                                 f'must be the number of tasks {num_tasks} (use expand_params)')
        if seed is None:
            seed = np.random.SeedSequence([self.seed, self.calls])
            self.calls += 1
        elif not isinstance(seed, np.random.SeedSequence):
            seed = np.random.SeedSequence(int(seed))
        num_rollouts = rollouts_per_task
        words = seed.generate_state(num_tasks * num_rollouts + 1)  # uint32 words
        env_seeds = words[:-1].reshape(num_tasks, num_rollouts)    # one per episode (B, N)
        tasks_per_wave = max(1, self.max_envs // num_rollouts)
        pool_envs = min(tasks_per_wave, num_tasks) * num_rollouts
        if self.inference == 'workers':  # no waves: each worker runs its share in batches
            return self._with_retries(policy, pool_envs, self._episodes_from_workers, policy,
                                      params_b, list(tasks), env_seeds.reshape(-1),
                                      (num_tasks, num_rollouts))
        parts = []
        for wave, b0 in enumerate(range(0, num_tasks, tasks_per_wave)):
            chunk = slice(b0, min(b0 + tasks_per_wave, num_tasks))
            noise = np.random.SeedSequence([int(words[-1]), wave]).generate_state(2)
            parts.append(self._with_retries(
                policy, pool_envs, self._sample_once, policy,
                {k: v[chunk] for k, v in params_b.items()}, list(tasks[chunk]),
                env_seeds[chunk].reshape(-1), int(noise[0]) << 32 | int(noise[1]),
                num_rollouts))
        if len(parts) == 1:
            return parts[0]
        return Episodes(*(torch.cat(fields) for fields in zip(*(p.as_tuple() for p in parts))))

    def _with_retries(self, policy, pool_envs, fn, *args):
        """Return ``fn(*args)`` on a pool of >= ``pool_envs`` envs; retry after crashes."""
        last = None
        for attempt in range(self.max_retries + 1):
            try:
                self._ensure_started(policy, pool_envs)
                return fn(*args)
            except WorkerCrashed as err:
                last = err
                self.crash_reports.extend(err.failures)
                logger.warning('sampler: %s -- worker replaced; re-sampling the batch '
                               '(attempt %d of %d)', err, attempt + 1, self.max_retries + 1)
        raise SamplerError(
            f'sampling failed {self.max_retries + 1} times in a row; last failure: {last}. '
            'A task or environment that always fails must be fixed or removed.') from last

    def _ensure_started(self, policy, num_envs: int) -> None:
        if self.backend.num_envs >= num_envs:
            return  # a larger pool serves a smaller wave: the extra envs stay idle
        spaces = self.backend.start(self.env_factory, num_envs)
        config = policy.config
        if (spaces.obs_dim, spaces.act_dim) != (config.obs_dim, config.act_dim):
            self.backend.close()
            raise ValueError(f'policy expects obs_dim={config.obs_dim}, act_dim='
                             f'{config.act_dim} but the environments have obs_dim='
                             f'{spaces.obs_dim}, act_dim={spaces.act_dim}')

    def _sample_once(self, policy, params_b, tasks, env_seeds, noise_seed, num_rollouts):
        """
        Roll out ``len(tasks) x num_rollouts`` episodes at once on the pool's first envs.

        With ``pipeline`` the rollouts of each task are split into two interleaved groups
        (even and odd ``n``); while the workers step one group, the main process computes the
        other group's actions. The grouping depends only on ``N``, so results never depend on
        the number of workers.
        """
        shape = (len(tasks), num_rollouts)
        used, pool = len(tasks) * num_rollouts, self.backend.num_envs
        horizon, dev = self.horizon, self.device
        obs_dim, act_dim = policy.config.obs_dim, policy.config.act_dim
        groups = min(GROUPS, num_rollouts) if self.pipeline else 1
        obs_bn = self._reset_pool(tasks, env_seeds, num_rollouts).reshape(shape + (obs_dim,))
        staging = np.zeros((pool, act_dim), dtype=np.float32)  # actions handed to the pool
        act = _actor(policy, params_b, noise_seed, dev)
        obs_buf = torch.zeros((horizon,) + shape + (obs_dim,), device=dev)  # (T, B, N, obs)
        act_buf = torch.zeros((horizon,) + shape + (act_dim,), device=dev)  # (T, B, N, act)
        logp_buf = torch.zeros((horizon,) + shape, device=dev)              # (T, B, N)
        rew_buf = np.zeros((horizon,) + shape, dtype=np.float32)           # (T, B, N)
        mask_buf = np.zeros((horizon,) + shape, dtype=np.float32)          # (T, B, N)
        alive = np.ones(shape, dtype=bool)                                 # (B, N)
        in_flight = [None] * groups  # per group: (active (B, N), t) of the step sent

        def finish(g):  # collect group g's step: rewards of step t, who ended
            active, t = in_flight[g]
            in_flight[g] = None
            result = self.backend.step_wait(g)
            rew_buf[t][active] = result.rewards[:used].reshape(shape)[active]
            ended = (result.terminated | result.truncated)[:used].reshape(shape)
            alive[active & ended] = False

        with torch.no_grad():
            for t in range(horizon):
                for g in range(groups):
                    if in_flight[g] is not None:
                        finish(g)
                    live = alive[:, g::groups]  # (B, N_g)
                    if not live.any():
                        continue
                    obs_buf[t, :, g::groups] = torch.from_numpy(obs_bn[:, g::groups])
                    # one call for all tasks of the wave: (B, N_g, act_dim), (B, N_g)
                    actions, logp = act(obs_buf[t, :, g::groups])
                    act_buf[t, :, g::groups] = actions
                    logp_buf[t, :, g::groups] = logp
                    mask_buf[t, :, g::groups] = live
                    active = np.zeros(pool, dtype=bool)
                    active_bn = active[:used].reshape(shape)
                    active_bn[:, g::groups] = live
                    staging[:used] = act_buf[t].reshape(used, act_dim).cpu().numpy()
                    self.backend.step_send(staging, active, g)
                    in_flight[g] = (active_bn, t)
                if not alive.any() and all(f is None for f in in_flight):
                    break
            for g in range(groups):
                if in_flight[g] is not None:
                    finish(g)
        self.env_steps += int(mask_buf.sum())
        return _episodes_tbn(obs_buf, act_buf, rew_buf, mask_buf, logp_buf, dev)

    def _reset_pool(self, tasks, env_seeds, num_rollouts):
        """
        Give the pool's first envs their tasks and reset them with ``env_seeds``.

        Returns the first envs' observations, a view of the pool's shared buffer (the next
        steps write into it): (B * N, obs_dim). The idle envs get any task and seed 0.
        """
        used, pool = len(tasks) * num_rollouts, self.backend.num_envs
        env_tasks = [task for task in tasks for _ in range(num_rollouts)]
        self.backend.set_tasks(env_tasks + [tasks[-1]] * (pool - used))  # idle envs: any task
        seeds = np.zeros(pool, dtype=np.int64)
        seeds[:used] = env_seeds
        return self.backend.reset(seeds)[:used]

    def _episodes_from_workers(self, policy, params_b, tasks, env_seeds, shape):
        """
        Run all episodes inside the workers in one job (tasks in it, log-probs computed there).

        Each worker gets its share of the episodes and runs them in batches on its envs, so
        it never waits for the main process between batches; the results are the same for any
        pool size, number of workers and backend.
        """
        num_tasks, num_rollouts = shape
        config = policy.config
        same = all(v.dim() > 0 and v.stride(0) == 0 for v in params_b.values())
        params = {k: np.ascontiguousarray(v[:1] if same else v, dtype=np.float32)
                  for k, v in ((k, v.detach().cpu().numpy()) for k, v in params_b.items())}
        index = np.repeat(np.arange(num_tasks), num_rollouts)   # each env's task
        job = RolloutJob(
            params=params, obs_mean=policy.obs_mean.detach().cpu().numpy().astype(np.float32),
            obs_std=policy.obs_std.detach().cpu().numpy().astype(np.float32),
            obs_clip=float(config.obs_clip), activation=config.activation,
            num_hidden=len(config.hidden_sizes), horizon=self.horizon, task_index=index,
            seeds=np.asarray(env_seeds, dtype=np.int64),
            slot=np.tile(np.arange(num_rollouts), num_tasks), slots=num_rollouts,
            tasks=tuple(task for task in tasks for _ in range(num_rollouts)),
            deterministic=bool(getattr(policy, 'deterministic', False)))
        out = self.backend.rollout(job)
        dev = self.device

        def arrange(x):  # (B*N, T, ...) -> (B, N, T, ...)
            return torch.as_tensor(x).reshape(shape + x.shape[1:]).to(dev)

        mask = arrange(out['mask'])
        self.env_steps += int(mask.sum())
        return Episodes(observations=arrange(out['observations']),
                        actions=arrange(out['actions']), rewards=arrange(out['rewards']),
                        mask=mask, log_probs=arrange(out['log_probs']))


def _actor(policy, params_b, noise_seed, dev):
    """
    Return ``act(obs) -> (actions, log_probs)`` for (B, N_g, obs_dim) observations.

    The noise comes from one generator seeded with ``noise_seed``. When every task has the
    same parameters (``expand_params``, e.g. pre-update sampling) it is one plain batched MLP
    call, without vmap overhead and with the same noise draws as the vmapped call; otherwise
    one call vmapped over the task dim.
    """
    gen = torch.Generator(device=dev)
    gen.manual_seed(noise_seed)
    params_b = {k: v.detach().to(dev) for k, v in params_b.items()}
    if all(v.dim() > 0 and v.stride(0) == 0 for v in params_b.values()):
        single = {k: v[0] for k, v in params_b.items()}

        def act(obs):
            return policy.sample(single, obs, generator=gen)
    else:
        def act(obs):  # per-task params: one call vmapped over the task dim
            return policy.batched_sample(params_b, obs, generator=gen)
    return act


def _episodes_tbn(obs_buf, act_buf, rew_buf, mask_buf, logp_buf, dev):
    """Return ``Episodes`` (B, N, T, ...) from the step buffers (T, B, N, ...)."""
    def arrange(x):  # (T, B, N, ...) -> (B, N, T, ...)
        x = torch.as_tensor(x, device=dev)
        return x.permute(1, 2, 0, *range(3, x.dim())).contiguous()

    return Episodes(observations=arrange(obs_buf), actions=arrange(act_buf),
                    rewards=arrange(rew_buf), mask=arrange(mask_buf),
                    log_probs=arrange(logp_buf))
