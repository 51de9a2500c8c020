"""Test helpers shared by several test files (and benchmarks/meta_step.py): toy Episodes."""

from maml_robot.episodes import Episodes
from maml_robot.policy import expand_params
import torch


def synthetic_episodes(policy, params, num_tasks, num_rollouts, horizon, seed, reward_fn=None):
    """
    Sample Episodes from ``policy`` on a toy linear system, for tests and benchmarks.

    The observation follows ``o_{t+1} = 0.9 o_t + 0.1 tanh(A_b a_t)`` padded to obs_dim, with
    a per-task matrix ``A_b``; reward ``-|o - goal_b|^2 - 0.01 |a|^2``. Returns Episodes of
    shape (num_tasks, N, T) with a full mask.
    """
    cfg = policy.config
    gen = torch.Generator().manual_seed(int(seed))
    d_ctrl = min(cfg.obs_dim, cfg.act_dim)
    mix = torch.randn(num_tasks, d_ctrl, cfg.act_dim, generator=gen)  # (B, d, act_dim)
    goal = torch.randn(num_tasks, 1, cfg.obs_dim, generator=gen)  # (B, 1, obs_dim)
    obs = 0.1 * torch.randn(num_tasks, num_rollouts, cfg.obs_dim, generator=gen)  # (B, N, o)
    if params['log_std'].dim() == 1:
        params = expand_params(params, num_tasks)
    out = {name: [] for name in ('observations', 'actions', 'rewards', 'log_probs')}
    for _ in range(horizon):
        actions, logp = policy.batched_sample(params, obs, generator=gen)  # (B, N, act_dim)
        reward = -((obs - goal) ** 2).sum(-1) - 0.01 * (actions ** 2).sum(-1)
        if reward_fn is not None:
            reward = reward_fn(obs, actions)
        out['observations'].append(obs)
        out['actions'].append(actions)
        out['rewards'].append(reward)
        out['log_probs'].append(logp)
        push = torch.tanh(torch.einsum('bda,bna->bnd', mix, actions))
        obs = obs.clone() * 0.9
        obs[..., :d_ctrl] += 0.1 * push
    t = {k: torch.stack(v, dim=2) for k, v in out.items()}  # (B, N, T, ...)
    return Episodes(t['observations'], t['actions'], t['rewards'],
                    torch.ones_like(t['rewards']), t['log_probs'])
