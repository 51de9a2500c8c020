"""Episodes, Transition and the returns computed from them: exact values on hand-made data."""

from maml_robot.episodes import episode_return, Episodes, Transition
from maml_robot.evaluate import episode_returns
from maml_robot.meta.operators import candidate_returns
import numpy as np
import pytest
import torch


def live_episode(rewards, obs_dim=3, act_dim=2, log_prob=-1.25):
    """Return a live episode: Transitions with observation t, action -t and the rewards."""
    return [Transition(np.full(obs_dim, t, np.float32), np.full(act_dim, -t, np.float64),
                       log_prob, r) for t, r in enumerate(rewards)]


def test_transition_is_named_and_ordered_like_the_episodes_fields():
    step = Transition(np.zeros(3, np.float32), np.ones(2), -0.5, 2.0)
    assert step.reward == step[3] == 2.0 and step.log_prob == step[2] == -0.5
    assert Transition._fields == ('observation', 'action', 'log_prob', 'reward')


def test_episode_return_sums_the_rewards_in_order_in_float64():
    assert episode_return(live_episode([0.5, -1.25, 3.0])) == 2.25
    assert episode_return([]) == 0.0
    # float64, left to right: 0.1 + 0.2 + 0.3, not the float32 (or re-ordered) sum
    assert episode_return(live_episode([0.1, 0.2, 0.3])) == 0.1 + 0.2 + 0.3 != 0.6


def test_returns_sum_only_the_valid_steps():
    rewards = torch.tensor([[[1.0, 2.0, 4.0], [0.5, 8.0, 16.0]],
                            [[-1.0, -2.0, 32.0], [3.0, 0.0, 0.0]]])      # (B=2, N=2, T=3)
    mask = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]],
                         [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    episodes = Episodes(torch.zeros(2, 2, 3, 1), torch.zeros(2, 2, 3, 1), rewards, mask,
                        torch.zeros(2, 2, 3))
    expected = [[7.0, 8.5], [-3.0, 3.0]]
    assert episodes.returns().tolist() == expected
    assert episodes.returns().dtype == torch.float32
    as64 = episodes.returns(torch.float64, 'cpu')
    assert as64.dtype == torch.float64 and as64.tolist() == expected
    assert episodes.mean_return().tolist() == [7.75, 0.0]
    assert episode_returns(episodes).tolist() == expected              # numpy, evaluation
    assert candidate_returns(episodes.task(0)).tolist() == expected[0]  # numpy, operators


def test_from_transitions_pads_like_from_rollouts():
    episodes = [live_episode([1.0, 2.0]), live_episode([0.5, 0.25, 4.0], log_prob=0.0)]
    batch = Episodes.from_transitions(episodes)
    assert tuple(batch.observations.shape) == (2, 3, 3) and tuple(batch.actions.shape) == (2, 3, 2)
    assert batch.mask.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert batch.rewards.tolist() == [[1.0, 2.0, 0.0], [0.5, 0.25, 4.0]]
    assert batch.log_probs.tolist() == [[-1.25, -1.25, 0.0], [0.0, 0.0, 0.0]]
    assert batch.observations[1, :, 0].tolist() == [0.0, 1.0, 2.0]
    assert batch.actions[0, :, 1].tolist() == [0.0, -1.0, 0.0]
    assert batch.returns().tolist() == [3.0, 4.75]
    by_dicts = Episodes.from_rollouts([
        {'observations': np.stack([s.observation for s in ep]),
         'actions': np.stack([s.action for s in ep]), 'rewards': [s.reward for s in ep],
         'log_probs': [s.log_prob for s in ep]}
        for ep in episodes])
    for name, a, b in zip(('obs', 'act', 'rew', 'mask', 'logp'), batch.as_tuple(),
                          by_dicts.as_tuple()):
        assert torch.equal(a, b), name


def test_from_transitions_keeps_a_float32_overflow_visible():
    batch = Episodes.from_transitions([live_episode([1e299, 1.0])])
    with pytest.raises(ValueError, match='rewards contains NaN or inf'):
        batch.check_finite()
    with pytest.raises(ValueError, match='at least one rollout'):
        Episodes.from_transitions([])
