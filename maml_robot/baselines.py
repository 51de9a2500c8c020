"""
Baselines on the meta-policy's tasks and budgets: PPO-DR, multi-task + fine-tune, oracle, random.

Every baseline is evaluated with the same :class:`~maml_robot.sampler.Sampler`, the same
evaluation seeds and the same ``R`` rollouts per task and step as the meta-policy, and
returns a :class:`~maml_robot.results.MethodResult` that ``maml-robot eval --baselines``
puts beside it. Trained models are cached (see :class:`BaselineCache`).
"""

from dataclasses import dataclass, field
import json
import time

from maml_robot import sb3_bridge
from maml_robot.atomic import atomic_path
from maml_robot.baseline_store import (arch_tag, BaselineCache, DEFAULT_MAX_ENVS, EnvSource,
                                       TASK_FILTERS, task_key)
from maml_robot.evaluate import adaptation_result, AdaptConfig, episode_returns
from maml_robot.policy import expand_params, GaussianPolicy, PolicyConfig, stack_params
from maml_robot.results import MethodResult
import numpy as np
from safetensors import safe_open
from safetensors.torch import load_file, save_file

KINDS = ('ppo-dr', 'multitask', 'oracle', 'random')
"""What ``maml-robot baseline --kind`` accepts."""

__all__ = ['BaselineCache', 'BaselineConfig', 'EnvSource', 'KINDS', 'LABELS', 'TASK_FILTERS',
           'arch_tag', 'multitask_params', 'progress_total', 'run_baseline', 'run_multitask',
           'run_oracle', 'run_ppo_dr', 'run_random', 'task_key']
"""Public names (the store's classes are re-exported for ``baselines.EnvSource`` etc.)."""

LABELS = {'ppo-dr': 'PPO-DR (fine-tuned)', 'multitask': 'multi-task + PG fine-tune',
          'oracle': 'oracle (PPO per task)', 'random': 'random'}
"""Legend text of each baseline."""


@dataclass(frozen=True)
class BaselineConfig:
    """One ``maml-robot baseline`` run."""

    kind: str
    """One of KINDS."""
    split: str = 'test'
    """Split whose fixed tasks are evaluated."""
    tasks: int = None
    """First N tasks of the split (None: all)."""
    adapt_steps: int = 3
    """K (same as the meta-policy's evaluation)."""
    rollouts: int = 20
    """R rollouts per task and step (same as the meta-policy's evaluation)."""
    train_steps: int = 500_000
    """Env steps of PPO training (PPO-DR / multi-task in total; the oracle per task)."""
    seeds: tuple = (0,)
    """Training seeds (the bootstrap unit)."""
    eval_seeds: tuple = (0,)
    """Evaluation seeds (as for the meta-policy; same seed = same initial states)."""
    oracle_tasks: int = 4
    """The oracle is trained on the first this-many evaluated tasks (costly)."""
    workers: int = 1
    """Worker processes for sampling and SB3 training envs."""
    device: str = 'cpu'
    """Device of the batched policy call during evaluation."""
    ppo: sb3_bridge.PPOConfig = sb3_bridge.PPOConfig()
    """SB3 PPO settings."""
    inner_lr: float = 0.1
    """Inner step size for the multi-task fine-tune (the meta checkpoint's)."""
    inner_kwargs: dict = field(default_factory=dict)
    """Advantage settings of inner_step (the meta checkpoint's)."""
    max_envs: int = DEFAULT_MAX_ENVS
    """Environments the Sampler keeps alive at once (as for the meta-policy)."""
    task_filter: str = None
    """Evaluate only the split's tasks in this subset (see TASK_FILTERS)."""

    def __post_init__(self):
        """Validate the choice of baseline and budgets."""
        if self.kind not in KINDS:
            raise ValueError(f'unknown baseline kind {self.kind!r}; use one of {KINDS}')
        if self.oracle_tasks < 1 or self.train_steps < 1 or not self.seeds:
            raise ValueError('--oracle-tasks and --train-steps must be >= 1, --seeds non-empty')
        AdaptConfig(self.adapt_steps, self.rollouts)  # validates K and R


def _dr_model(cfg, source, cache, seed):
    """Return the PPO trained with domain randomization over the train split (cached)."""
    path = cache.folder('ppo-dr', cfg.train_steps, seed) / 'model.zip'

    def train():
        makers = [sb3_bridge.EnvMaker(source.make_env, source.horizon, split='train',
                                      seed=sb3_bridge.seed_of(seed, i))
                  for i in range(cfg.ppo.n_envs)]
        venv = sb3_bridge.make_vec_env(makers, cfg.workers)
        try:
            return sb3_bridge.train_ppo(venv, cfg.train_steps, seed, cache.policy_config,
                                        cfg.ppo)
        finally:
            venv.close()
    return cache.sb3_model(path, train)


def _sample_returns(sampler, policy, params_b, tasks, rollouts, seed, step):
    """Return (mean, std) of the returns of ``rollouts`` per task, shape (B,) each."""
    episodes = sampler.sample(policy, params_b, tasks, rollouts,
                              seed=np.random.SeedSequence([seed, step]))
    returns = episode_returns(episodes)                               # (B, R)
    std = returns.std(-1, ddof=1) if rollouts > 1 else np.zeros(len(tasks))
    return returns.mean(-1), std


def _finetune_params(cfg, source, model_path, venv, task, seed):
    """
    Fine-tune the PPO-DR model on ``task``; return the converted params after each step.

    ``venv`` holds ``R`` envs (reused across tasks); each step is one PPO update on exactly
    ``R`` fresh episodes of ``T`` steps: the meta-policy's per-step env budget.
    """
    # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
    from stable_baselines3 import PPO

    for env in venv.envs:
        env.unwrapped.set_task(task)
    budget = cfg.rollouts * source.horizon                            # env steps per step
    model = PPO.load(model_path, env=venv, device='cpu', n_steps=source.horizon,
                     batch_size=min(cfg.ppo.batch_size, budget))
    model.set_random_seed(seed)
    model.set_logger(sb3_bridge.quiet_logger())
    venv.seed(seed)                                                   # fresh episodes per task
    out = []
    for _ in range(cfg.adapt_steps):
        model.learn(total_timesteps=budget, reset_num_timesteps=False)
        out.append(sb3_bridge.sb3_to_params(model, _policy_config(model))[1])
    return out


def _policy_config(model):
    """Return our PolicyConfig for an SB3 model trained with sb3_bridge.policy_kwargs()."""
    kwargs = model.policy_kwargs
    names = {v: k for k, v in sb3_bridge.ACTIVATION_MODULES.items()}
    return PolicyConfig(obs_dim=int(np.prod(model.observation_space.shape)),
                        act_dim=int(np.prod(model.action_space.shape)),
                        hidden_sizes=tuple(kwargs['net_arch']['pi']),
                        activation=names[kwargs['activation_fn']],
                        init_log_std=float(kwargs.get('log_std_init', 0.0)))


def _result(cfg, source, task_ids, steps, arrays, runs, groups, config):
    """Pack per-run arrays into a MethodResult."""
    return MethodResult(
        method=cfg.kind, label=LABELS[cfg.kind], scenario=source.name, split=cfg.split,
        task_ids=task_ids, runs=runs, groups=groups, steps=steps,
        env_steps=np.stack(arrays['env_steps']), returns=np.stack(arrays['returns']),
        returns_std=np.stack(arrays['returns_std']), rollouts=cfg.rollouts,
        wall_s=np.stack(arrays['wall_s']),
        config={'kind': cfg.kind, 'train_steps': cfg.train_steps, 'seeds': list(cfg.seeds),
                'eval_seeds': list(cfg.eval_seeds), 'rollouts_per_step': cfg.rollouts,
                'adapt_steps': cfg.adapt_steps, 'ppo': dict(vars(cfg.ppo)),
                'fingerprint': source.fingerprint, **config})


def run_random(cfg, source, tasks, task_ids, sampler, progress=None):
    """Uniform random actions on every task (the 0 of the normalized score)."""
    obs_dim, low, high = sb3_bridge.env_bounds(source.make_env)
    policy = sb3_bridge.UniformPolicy(obs_dim, low, high)
    params_b = {k: v.expand(len(tasks), -1) for k, v in policy.params.items()}
    arrays = {k: [] for k in ('returns', 'returns_std', 'env_steps', 'wall_s')}
    runs = []
    for seed in cfg.eval_seeds:
        start = time.perf_counter()
        mean, std = _sample_returns(sampler, policy, params_b, tasks, cfg.rollouts, seed, 0)
        arrays['returns'].append(mean[:, None])
        arrays['returns_std'].append(std[:, None])
        arrays['env_steps'].append(np.zeros((len(tasks), 1)))
        arrays['wall_s'].append(np.array([time.perf_counter() - start]))
        runs.append(f'random/seed{seed}')
        if progress is not None:
            progress.update(1)
    return _result(cfg, source, task_ids, [0], arrays, runs, ['random'] * len(runs), {})


def oracle_model(cfg, source, cache, task, task_id, seed):
    """Return the SB3 PPO trained on ``task`` alone (cached per split, task, budget and seed)."""
    path = cache.folder('oracle', cfg.train_steps, seed) / \
        f'task-{cfg.split}-{task_id}-{task_key(task)}.zip'

    def train():
        makers = [sb3_bridge.EnvMaker(source.make_env, source.horizon, task=task)
                  for _ in range(cfg.ppo.n_envs)]
        venv = sb3_bridge.make_vec_env(makers, cfg.workers)
        try:
            return sb3_bridge.train_ppo(venv, cfg.train_steps, sb3_bridge.seed_of(seed, task_id),
                                        cache.policy_config, cfg.ppo)
        finally:
            venv.close()
    return cache.sb3_model(path, train)


def run_oracle(cfg, source, cache, tasks, task_ids, sampler, progress=None):
    """PPO trained on each task itself (first ``cfg.oracle_tasks`` tasks): the 1 of the score."""
    n = min(cfg.oracle_tasks, len(tasks))
    tasks, task_ids = tasks[:n], task_ids[:n]
    arrays = {k: [] for k in ('returns', 'returns_std', 'env_steps', 'wall_s')}
    runs, groups = [], []
    for seed in cfg.seeds:
        start = time.perf_counter()
        params = []
        for task, task_id in zip(tasks, task_ids):
            model = oracle_model(cfg, source, cache, task, task_id, seed)
            policy, p = sb3_bridge.sb3_to_params(model, cache.policy_config)
            policy.to(sampler.device)
            params.append(sb3_bridge.finite_or_raise(p, f'oracle for task {task_id}'))
            if progress is not None:
                progress.update(1)
        train_s = time.perf_counter() - start
        for eval_seed in cfg.eval_seeds:
            mean, std = _sample_returns(sampler, policy, stack_params(params), tasks,
                                        cfg.rollouts, eval_seed, 0)
            arrays['returns'].append(mean[:, None])
            arrays['returns_std'].append(std[:, None])
            arrays['env_steps'].append(np.zeros((n, 1)))
            arrays['wall_s'].append(np.array([train_s]))
            runs.append(f'seed{seed}/seed{eval_seed}')
            groups.append(f'seed{seed}')
    return _result(cfg, source, task_ids, [0], arrays, runs, groups,
                   {'oracle_tasks': n, 'train_steps_per_task': cfg.train_steps})


def run_ppo_dr(cfg, source, cache, tasks, task_ids, sampler, progress=None):
    """PPO-DR zero-shot (step 0) and fine-tuned with PPO on each task, ``R`` episodes a step."""
    # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([sb3_bridge.EnvMaker(source.make_env, source.horizon)] * cfg.rollouts)
    try:
        return _run_ppo_dr(cfg, source, cache, tasks, task_ids, sampler, venv, progress)
    finally:
        venv.close()


def _run_ppo_dr(cfg, source, cache, tasks, task_ids, sampler, venv, progress):
    steps = np.arange(cfg.adapt_steps + 1)
    per_step = cfg.rollouts * source.horizon
    arrays = {k: [] for k in ('returns', 'returns_std', 'env_steps', 'wall_s')}
    runs, groups = [], []
    for seed in cfg.seeds:
        model = _dr_model(cfg, source, cache, seed)
        policy, params0 = sb3_bridge.sb3_to_params(model, cache.policy_config)
        policy.to(sampler.device)
        path = cache.folder('ppo-dr', cfg.train_steps, seed) / 'model.zip'
        for eval_seed in cfg.eval_seeds:
            start = time.perf_counter()
            tuned = [[] for _ in range(cfg.adapt_steps)]              # [k][task] params
            for task, task_id in zip(tasks, task_ids):
                out = _finetune_params(cfg, source, path, venv, task,
                                       sb3_bridge.seed_of(seed, eval_seed, task_id))
                for k, p in enumerate(out):
                    tuned[k].append(sb3_bridge.finite_or_raise(p, f'fine-tune of {task_id}'))
                if progress is not None:
                    progress.update(1)
            tune_s = time.perf_counter() - start
            means, stds = [], []
            for k in steps:
                params_b = expand_params(params0, len(tasks)) if k == 0 else \
                    stack_params(tuned[k - 1])
                mean, std = _sample_returns(sampler, policy, params_b, tasks, cfg.rollouts,
                                            eval_seed, int(k))
                means.append(mean)
                stds.append(std)
            arrays['returns'].append(np.stack(means, -1))
            arrays['returns_std'].append(np.stack(stds, -1))
            arrays['env_steps'].append(np.broadcast_to(steps * float(per_step),
                                                       (len(tasks), len(steps))))
            arrays['wall_s'].append(steps / max(cfg.adapt_steps, 1) * tune_s)
            runs.append(f'seed{seed}/seed{eval_seed}')
            groups.append(f'seed{seed}')
    return _result(cfg, source, task_ids, steps, arrays, runs, groups,
                   {'finetune': 'SB3 PPO, one update of R episodes per step'})


def multitask_params(cfg, source, cache, seed):
    """Return ``(policy, params)`` of the multi-task policy, cached as safetensors."""
    path = cache.folder('multitask', cfg.train_steps, seed) / 'params.safetensors'
    if path.exists() and (not cache.retrain or path in cache.trained):
        params = load_file(str(path))
        with safe_open(str(path), 'pt') as handle:
            config = PolicyConfig.from_dict(json.loads(handle.metadata()['policy_config']))
        return GaussianPolicy(config), params
    policy, params = sb3_bridge.sb3_to_params(_dr_model(cfg, source, cache, seed),
                                              cache.policy_config)
    with atomic_path(path) as tmp:
        save_file(params, str(tmp), metadata={
            'policy_config': json.dumps(policy.config.to_dict()),
            'source': 'ppo-dr model of the same budget and seed, converted'})
    cache.trained.append(path)
    return policy, params


def run_multitask(cfg, source, cache, tasks, task_ids, sampler, progress=None):
    """Fine-tune the multi-task (domain-randomized) policy with inner_step, as the meta-policy."""
    starts = []
    for seed in cfg.seeds:
        policy, params = multitask_params(cfg, source, cache, seed)
        starts.append((f'seed{seed}', policy.to(sampler.device), params, None))
    adapt = AdaptConfig(cfg.adapt_steps, cfg.rollouts, cfg.inner_lr, dict(cfg.inner_kwargs))
    result = adaptation_result(
        starts, tasks, task_ids, sampler, adapt, eval_seeds=cfg.eval_seeds,
        method='multitask', label=LABELS['multitask'], scenario=source.name, split=cfg.split,
        config={'kind': 'multitask', 'train_steps': cfg.train_steps, 'seeds': list(cfg.seeds),
                'inner_lr': cfg.inner_lr, 'fingerprint': source.fingerprint},
        progress=progress)
    return result


def run_baseline(cfg, source, cache, progress=None):
    """Train (or load from the cache) and evaluate one baseline; return its MethodResult."""
    tasks, task_ids = source.split_tasks(cfg.split, cfg.tasks, cfg.task_filter)
    with source.sampler(cfg.workers, device=cfg.device, max_envs=cfg.max_envs) as sampler:
        if cfg.kind == 'random':
            return run_random(cfg, source, tasks, task_ids, sampler, progress)
        if cfg.kind == 'oracle':
            return run_oracle(cfg, source, cache, tasks, task_ids, sampler, progress)
        if cfg.kind == 'ppo-dr':
            return run_ppo_dr(cfg, source, cache, tasks, task_ids, sampler, progress)
        return run_multitask(cfg, source, cache, tasks, task_ids, sampler, progress)


def progress_total(cfg, n_tasks):
    """Return the number of progress-bar ticks :func:`run_baseline` will make."""
    if cfg.kind == 'random':
        return len(cfg.eval_seeds)
    if cfg.kind == 'oracle':
        return len(cfg.seeds) * min(cfg.oracle_tasks, n_tasks)
    if cfg.kind == 'ppo-dr':
        return len(cfg.seeds) * len(cfg.eval_seeds) * n_tasks
    return len(cfg.seeds) * len(cfg.eval_seeds) * (cfg.adapt_steps + 1)
