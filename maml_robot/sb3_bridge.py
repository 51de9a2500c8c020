"""
Glue between stable-baselines3 and our policies: task wrappers, PPO set-up, weight conversion.

SB3's ``MlpPolicy`` with ``net_arch=dict(pi=H, vf=H)`` and a state-independent ``log_std`` has
exactly the actor of :class:`maml_robot.policy.GaussianPolicy` with ``hidden_sizes=H``, so a
trained SB3 actor converts into our params dict. Every baseline is then evaluated by the same
:class:`~maml_robot.sampler.Sampler` as the meta-policy (same seeds, same stochastic actions).
"""

from dataclasses import dataclass, field, replace
import hashlib
from types import SimpleNamespace
from typing import Any, Callable

import gymnasium as gym
from gymnasium.wrappers import TimeLimit
from maml_robot.policy import GaussianPolicy
import numpy as np
import torch

ACTIVATION_MODULES = {'tanh': torch.nn.Tanh, 'relu': torch.nn.ReLU, 'elu': torch.nn.ELU}
"""Our activation names -> the torch modules SB3 builds its MLP from."""


class TaskRandomizationWrapper(gym.Wrapper):
    """
    Domain randomization: set a new task, sampled from ``split``, at every ``reset``.

    The tasks come from ``env.unwrapped.sample_tasks(1, split, seed)`` with seeds drawn from this
    wrapper's own generator, so a run is reproducible from ``seed`` (a ``seed`` given to
    ``reset`` re-seeds it, as SB3 does once per env). The current task is ``self.task``.
    """

    def __init__(self, env, split='train', seed=None):
        """:param env: an env with the task API. :param split: split to sample from."""
        super().__init__(env)
        for name in ('sample_tasks', 'set_task'):
            if not hasattr(env.unwrapped, name):
                raise ValueError(f'{type(env.unwrapped).__name__} has no {name}(); domain '
                                 'randomization needs the task API of maml_robot.envs')
        self.split = split
        self.task = None
        self._rng = np.random.default_rng(seed)

    def reset(self, *, seed=None, options=None):
        """Sample and set a new task, then reset the wrapped env."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        task_seed = int(self._rng.integers(2 ** 63 - 1))
        self.task = self.env.unwrapped.sample_tasks(1, split=self.split, seed=task_seed)[0]
        self.env.unwrapped.set_task(self.task)
        return self.env.reset(seed=seed, options=options)


@dataclass(frozen=True)
class EnvMaker:
    """Picklable factory of one SB3 training env: fixed task, or a new train task per reset."""

    make_env: Callable[[], Any]
    """Zero-argument factory of an env with the task API (e.g. ScenarioEnvFactory)."""
    horizon: int
    """Episode length (the env is truncated there, as the Sampler does)."""
    task: Any = None
    """A fixed task (oracle, fine-tuning), or None with ``split`` set."""
    split: str = None
    """Domain randomization over this split when set."""
    seed: int = 0
    """Seed of the domain-randomization task stream."""

    def __call__(self):
        """Build the env (wrapped in TimeLimit and SB3's Monitor)."""
        # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
        from stable_baselines3.common.monitor import Monitor

        env = TimeLimit(self.make_env(), max_episode_steps=self.horizon)
        if self.split is not None:
            env = TaskRandomizationWrapper(env, self.split, self.seed)
        elif self.task is not None:
            env.unwrapped.set_task(self.task)
        return Monitor(env)


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters of the SB3 PPO baselines (SB3's defaults where not stated)."""

    n_envs: int = 8
    """Parallel envs per update."""
    n_steps: int = 256
    """Steps per env per update (rollout buffer = n_envs * n_steps)."""
    batch_size: int = 256
    """Minibatch size."""
    n_epochs: int = 10
    """Passes over each rollout buffer."""
    learning_rate: float = 3e-4
    """Adam step size (also used when fine-tuning)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clip."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    extra: dict = field(default_factory=dict)
    """Any further PPO keyword arguments."""

    def kwargs(self):
        """Return PPO constructor keyword arguments."""
        return {'n_steps': self.n_steps, 'batch_size': self.batch_size,
                'n_epochs': self.n_epochs, 'learning_rate': self.learning_rate,
                'gamma': self.gamma, 'gae_lambda': self.gae_lambda,
                'clip_range': self.clip_range, 'ent_coef': self.ent_coef, **self.extra}


def policy_kwargs(policy_config):
    """Return SB3 ``policy_kwargs`` whose actor matches ``policy_config``."""
    return {'net_arch': {'pi': list(policy_config.hidden_sizes),
                         'vf': list(policy_config.hidden_sizes)},
            'activation_fn': ACTIVATION_MODULES[policy_config.activation],
            'log_std_init': float(policy_config.init_log_std)}


def make_vec_env(makers, workers=1):
    """Return a VecEnv over ``makers``: in-process, or subprocesses when ``workers > 1``."""
    # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if workers > 1 and len(makers) > 1:
        return SubprocVecEnv(list(makers), start_method='spawn')
    return DummyVecEnv(list(makers))


def quiet_logger():
    """Return an SB3 logger that writes nothing (SB3's default makes a /tmp/SB3-* folder)."""
    # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
    from stable_baselines3.common.logger import Logger
    return Logger(folder=None, output_formats=[])


def train_ppo(venv, total_steps, seed, policy_config, ppo=PPOConfig(), device='cpu'):
    """Train SB3 PPO on ``venv`` for ``total_steps`` env steps; return the model."""
    # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
    from stable_baselines3 import PPO

    if total_steps < 1:
        raise ValueError(f'--train-steps must be >= 1; got {total_steps}')
    model = PPO('MlpPolicy', venv, seed=int(seed), device=device, verbose=0,
                policy_kwargs=policy_kwargs(policy_config), **ppo.kwargs())
    model.set_logger(quiet_logger())
    model.learn(total_timesteps=int(total_steps))
    return model


def sb3_to_params(model, policy_config):
    """
    Convert an SB3 PPO actor into ``(GaussianPolicy, params)`` of our functional policy.

    The returned policy has no observation normalization (SB3 saw raw observations) and no
    observation clip. Raises ValueError when the SB3 network is not the same architecture.
    """
    sb3 = model.policy
    layers = list(sb3.mlp_extractor.policy_net)
    linears = [m for m in layers if isinstance(m, torch.nn.Linear)]
    acts = [m for m in layers if not isinstance(m, torch.nn.Linear)]
    want_act = ACTIVATION_MODULES[policy_config.activation]
    sizes = tuple(m.out_features for m in linears)
    same_acts = all(isinstance(a, want_act) for a in acts)
    if (sizes != tuple(policy_config.hidden_sizes) or not same_acts
            or getattr(sb3, 'use_sde', False) or getattr(sb3, 'squash_output', False)
            or not hasattr(sb3, 'log_std')):
        raise ValueError(f'SB3 actor {sizes} with {[type(a).__name__ for a in acts]} does not '
                         f'match the policy config {policy_config.hidden_sizes} '
                         f'{policy_config.activation}; train it with sb3_bridge.policy_kwargs()')
    config = replace(policy_config, obs_clip=0.0)
    params = {}
    for i, linear in enumerate(linears):
        params[f'hidden.{i}.weight'] = linear.weight
        params[f'hidden.{i}.bias'] = linear.bias
    params['mean.weight'] = sb3.action_net.weight
    params['mean.bias'] = sb3.action_net.bias
    params['log_std'] = sb3.log_std
    params = {k: v.detach().to('cpu', torch.float32).clone() for k, v in params.items()}
    policy = GaussianPolicy(config)
    policy.check_params(params)
    return policy, params


class UniformPolicy:
    """
    The random baseline: actions uniform over the action box, in the Sampler's policy API.

    Its "parameters" are the box bounds ``{'low': (act_dim,), 'high': (act_dim,)}`` so the
    Sampler can batch them over tasks like any params dict.
    """

    def __init__(self, obs_dim, low, high):
        """:param obs_dim: observation length. :param low, high: action bounds (act_dim,)."""
        low = torch.as_tensor(np.asarray(low, dtype=np.float32))
        high = torch.as_tensor(np.asarray(high, dtype=np.float32))
        if low.shape != high.shape or not bool((high > low).all()):
            raise ValueError(f'uniform policy needs finite bounds with high > low; got {low}, '
                             f'{high}')
        self.config = SimpleNamespace(obs_dim=int(obs_dim), act_dim=int(low.numel()))
        self.params = {'low': low, 'high': high}

    def sample(self, params, obs, generator=None):
        """Return uniform actions ``(..., act_dim)`` and their log-density ``(...)``."""
        low, high = params['low'], params['high']                     # (act_dim,)
        shape = tuple(obs.shape[:-1]) + (self.config.act_dim,)
        u = torch.rand(shape, generator=generator,
                       device='cpu' if generator is None else generator.device)
        actions = low + (high - low) * u.to(low.device)
        logp = -torch.log(high - low).sum(-1).expand(shape[:-1])
        return actions, logp

    def batched_sample(self, params_b, obs_b, generator=None):
        """Return uniform actions ``(B, ..., act_dim)`` and their log-density ``(B, ...)``."""
        low, high = params_b['low'], params_b['high']                # (B, act_dim)
        shape = tuple(obs_b.shape[:-1]) + (self.config.act_dim,)
        u = torch.rand(shape, generator=generator,
                       device='cpu' if generator is None else generator.device)
        low = low.reshape(low.shape[:1] + (1,) * (len(shape) - 2) + low.shape[1:])
        high = high.reshape(low.shape)
        actions = low + (high - low) * u.to(low.device)
        logp = -torch.log(high - low).sum(-1).expand(shape[:-1])
        return actions, logp


def env_bounds(make_env):
    """Return ``(obs_dim, act_low, act_high)`` of the envs ``make_env`` builds."""
    env = make_env()
    try:
        obs_dim = int(np.prod(env.observation_space.shape))
        low = np.asarray(env.action_space.low, dtype=np.float64)
        high = np.asarray(env.action_space.high, dtype=np.float64)
    finally:
        env.close()
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError('the random baseline needs a bounded action space; got '
                         f'[{low}, {high}]')
    return obs_dim, low, high


def seed_of(*parts):
    """Return a 32-bit seed derived from ``parts`` (ints/strings), stable across runs."""
    digest = hashlib.sha256(repr(tuple(parts)).encode()).digest()
    return int.from_bytes(digest[:4], 'little')


def finite_or_raise(params, what):
    """Raise ValueError if any tensor of ``params`` is non-finite."""
    for name, value in params.items():
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f'{what}: parameter {name!r} is not finite; the run diverged')
    return params
