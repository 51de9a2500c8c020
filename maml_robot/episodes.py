"""Episodes: padded batches of rollouts (with a validity mask) as the meta-learner sees them."""

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch

FIELDS = ('observations', 'actions', 'rewards', 'mask', 'log_probs')


class Transition(NamedTuple):
    """One control step of a live episode (the online adapter's record; a row of Episodes)."""

    observation: np.ndarray
    """(obs_dim,) raw observation the action was chosen from."""
    action: np.ndarray
    """(act_dim,) the sampled (unclipped) action."""
    log_prob: float
    """Log-prob of ``action`` under the policy that chose it (0.0 for a mean action)."""
    reward: float
    """Reward of the step."""


def episode_return(transitions) -> float:
    """Return the undiscounted return of one live episode: its rewards summed in order."""
    return float(sum(step.reward for step in transitions))


@dataclass
class Episodes:
    """
    A batch of rollouts, padded to a common length ``T``.

    Leading dims ``...`` are free: ``(N, T)`` for one task, ``(B, N, T)`` for B tasks.
    Valid steps of a rollout form a prefix (mask 1, 1, ..., 1, 0, ..., 0); padded entries of
    every field must be finite (zeros are fine).
    """

    observations: torch.Tensor
    """(..., N, T, obs_dim) raw observations."""
    actions: torch.Tensor
    """(..., N, T, act_dim) the sampled (unclipped) actions."""
    rewards: torch.Tensor
    """(..., N, T) rewards."""
    mask: torch.Tensor
    """(..., N, T) 1.0 for valid steps, 0.0 after the episode ended."""
    log_probs: torch.Tensor
    """(..., N, T) log-prob of the actions under the policy that sampled them."""

    def __post_init__(self):
        lead = tuple(self.rewards.shape)
        if len(lead) < 2:
            raise ValueError(f'rewards must be (..., N, T), got shape {lead}')
        for name in ('mask', 'log_probs'):
            if tuple(getattr(self, name).shape) != lead:
                raise ValueError(f'Episodes.{name} has shape {tuple(getattr(self, name).shape)}; '
                                 f'it must match rewards {lead}')
        for name in ('observations', 'actions'):
            shape = tuple(getattr(self, name).shape)
            if shape[:-1] != lead:
                raise ValueError(f'Episodes.{name} has shape {shape}; it must be {lead} + (dim,)')

    @property
    def batch_shape(self):
        """Return the leading dims before (N, T)."""
        return tuple(self.rewards.shape[:-2])

    @property
    def num_rollouts(self):
        """Return N, the number of rollouts."""
        return int(self.rewards.shape[-2])

    @property
    def horizon(self):
        """Return T, the padded length."""
        return int(self.rewards.shape[-1])

    def as_tuple(self):
        """Return the five tensors in field order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def apply(self, fn):
        """Return new Episodes with ``fn`` applied to every tensor."""
        return Episodes(*(fn(t) for t in self.as_tuple()))

    def to(self, device=None, dtype=None):
        """Move to a device; floating fields are cast to ``dtype`` when given."""
        return self.apply(lambda t: t.to(device=device, dtype=dtype))

    def task(self, i):
        """Return the episodes of task ``i`` (drops the first leading dim)."""
        return self.apply(lambda t: t[i])

    def returns(self, dtype=None, device=None):
        """
        Return the undiscounted return of every rollout (valid steps only): shape (..., N).

        ``dtype``/``device`` convert rewards and mask first (e.g. ``torch.float64, 'cpu'`` for
        statistics in numpy); by default the rewards' own.
        """
        rewards = self.rewards.to(device=device, dtype=dtype)       # (..., N, T)
        mask = self.mask.to(device=device, dtype=dtype)             # (..., N, T)
        return (rewards * mask).sum(-1)

    def mean_return(self):
        """Average undiscounted return per rollout, averaged over N: shape batch_shape."""
        return self.returns().mean(-1)

    def check_finite(self):
        """Raise ValueError if any field holds NaN or inf."""
        for name in FIELDS:
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f'Episodes.{name} contains NaN or inf; drop or clean those '
                                 f'steps before adapting')

    @staticmethod
    def stack(episodes_list):
        """Stack per-task Episodes (same N) into one with a leading B dim, padding T."""
        if not episodes_list:
            raise ValueError('Episodes.stack needs at least one Episodes')
        horizon = max(e.horizon for e in episodes_list)
        padded = [pad_to(e, horizon) for e in episodes_list]
        return Episodes(*(torch.stack(ts) for ts in zip(*(e.as_tuple() for e in padded))))

    @staticmethod
    def from_rollouts(rollouts):
        """
        Build one task's Episodes from rollouts of unequal length.

        :param rollouts: sequence of dicts with keys observations (T_i, obs_dim), actions
            (T_i, act_dim), rewards (T_i,), log_probs (T_i,) (tensors or arrays).
        :returns: Episodes of shape (N, max T_i), mask marking the valid prefix of each.
        """
        if not rollouts:
            raise ValueError('from_rollouts needs at least one rollout')
        horizon = max(len(r['rewards']) for r in rollouts)
        if horizon == 0:
            raise ValueError('every rollout is empty; collect at least one step')
        cols = {name: [] for name in FIELDS}
        for r in rollouts:
            length = len(r['rewards'])
            for name in ('observations', 'actions', 'rewards', 'log_probs'):
                t = torch.as_tensor(r[name], dtype=torch.float32)
                if t.shape[0] != length:
                    raise ValueError(f'rollout field {name!r} has {t.shape[0]} steps but '
                                     f'rewards has {length}')
                pad = torch.zeros((horizon - length,) + tuple(t.shape[1:]))
                cols[name].append(torch.cat([t, pad]))
            m = torch.zeros(horizon)
            m[:length] = 1.0
            cols['mask'].append(m)
        return Episodes(*(torch.stack(cols[name]) for name in FIELDS))

    @staticmethod
    def from_transitions(episodes):
        """
        Build one task's Episodes from live episodes, each a sequence of :class:`Transition`.

        :returns: :meth:`from_rollouts` of them: shape (N, max length), padded with mask 0.
        """
        return Episodes.from_rollouts([{
            'observations': np.stack([step.observation for step in ep]),  # (T_i, obs_dim)
            'actions': np.stack([step.action for step in ep]),            # (T_i, act_dim)
            'rewards': np.array([step.reward for step in ep], dtype=np.float64),    # (T_i,)
            'log_probs': np.array([step.log_prob for step in ep], dtype=np.float64)}
            for ep in episodes])


def pad_to(episodes, horizon):
    """Zero-pad the time dim of ``episodes`` to ``horizon`` steps (mask 0 on padding)."""
    extra = horizon - episodes.horizon
    if extra < 0:
        raise ValueError(f'cannot pad {episodes.horizon} steps down to {horizon}')
    if extra == 0:
        return episodes

    def pad(t, per_step_dims):
        shape = list(t.shape)
        shape[t.dim() - 1 - per_step_dims] = extra
        return torch.cat([t, t.new_zeros(shape)], dim=t.dim() - 1 - per_step_dims)

    return Episodes(pad(episodes.observations, 1), pad(episodes.actions, 1),
                    pad(episodes.rewards, 0), pad(episodes.mask, 0), pad(episodes.log_probs, 0))
