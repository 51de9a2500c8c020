"""Tests for the functional Gaussian policy, its normalization and the batched helpers."""

import math

from maml_robot.policy import (expand_params, GaussianPolicy, ObsNormalizer, PolicyConfig,
                               stack_params, unstack_params)
import pytest
import torch

torch.set_num_threads(1)


def make_policy(obs_dim=5, act_dim=2):
    return GaussianPolicy(PolicyConfig(obs_dim, act_dim, hidden_sizes=(16, 16)))


def test_init_is_seeded_and_shaped():
    pol = make_policy()
    a, b, c = pol.init_params(1), pol.init_params(1), pol.init_params(2)
    assert set(a) == set(pol.config.param_shapes())
    for k, shape in pol.config.param_shapes().items():
        assert tuple(a[k].shape) == shape
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a['hidden.0.weight'], c['hidden.0.weight'])
    assert torch.all(a['log_std'] == 0.0)


def test_log_prob_matches_torch_normal():
    pol = make_policy()
    params = pol.init_params(0)
    params['log_std'] = torch.tensor([-0.3, 0.2])
    obs = torch.randn(7, 3, 5)
    act = torch.randn(7, 3, 2)
    ref = pol.dist(params, obs).log_prob(act).sum(-1)
    assert torch.allclose(pol.log_prob(params, obs, act), ref, atol=1e-5)
    assert pol.log_prob(params, obs, act).shape == (7, 3)


def test_normalization_is_applied_and_clipped():
    pol = make_policy(obs_dim=2, act_dim=1)
    pol.set_normalization(torch.tensor([1.0, -2.0]), torch.tensor([2.0, 0.5]))
    x = pol.normalize(torch.tensor([[3.0, -1.0], [1.0, 100.0]]))
    assert torch.allclose(x, torch.tensor([[1.0, 2.0], [0.0, 10.0]]))
    with pytest.raises(ValueError, match='shape'):
        pol.set_normalization(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match='> 0'):
        pol.set_normalization(torch.zeros(2), torch.zeros(2))


def test_normalization_changes_output_and_is_not_a_param():
    pol = make_policy()
    params = pol.init_params(0)
    obs = torch.randn(4, 5) * 3 + 2
    before = pol.mean_action(params, obs)
    pol.set_normalization(obs.mean(0), obs.std(0))
    assert not torch.allclose(before, pol.mean_action(params, obs))
    assert 'obs_mean' not in params


def test_batched_matches_loop_and_helpers_roundtrip():
    pol = make_policy()
    plist = [pol.init_params(s) for s in range(3)]
    pb = stack_params(plist)
    obs = torch.randn(3, 6, 5)
    act = torch.randn(3, 6, 2)
    lp = pol.batched_log_prob(pb, obs, act)
    for i in range(3):
        assert torch.allclose(lp[i], pol.log_prob(plist[i], obs[i], act[i]), atol=1e-6)
    back = unstack_params(pb)
    assert all(torch.equal(back[1][k], plist[1][k]) for k in plist[1])
    pe = expand_params(plist[0], 4)
    assert pe['log_std'].shape == (4, 2)


def test_batched_sample_log_probs_are_consistent():
    pol = make_policy()
    pb = expand_params(pol.init_params(0), 2)
    obs = torch.randn(2, 8, 5)
    gen = torch.Generator().manual_seed(0)
    act, logp = pol.batched_sample(pb, obs, generator=gen)
    assert act.shape == (2, 8, 2)
    assert torch.allclose(logp, pol.batched_log_prob(pb, obs, act), atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    act2, _ = pol.batched_sample(pb, obs, generator=gen)
    assert torch.equal(act, act2)


def test_obs_normalizer_matches_batch_statistics():
    data = torch.randn(100, 3, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1]) + 4.0
    norm = ObsNormalizer(3)
    for chunk in data.split(17):
        norm.update(chunk)
    mean, std = norm.stats()
    assert torch.allclose(mean.double(), data.mean(0), atol=1e-5)
    assert torch.allclose(std.double(), data.std(0, unbiased=False), atol=1e-5)
    mask = torch.zeros(100)
    mask[:10] = 1
    masked = ObsNormalizer(3)
    masked.update(data, mask)
    assert torch.allclose(masked.stats()[0].double(), data[:10].mean(0), atol=1e-5)
    other = ObsNormalizer(3)
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other.stats()[1], std)
    with pytest.raises(ValueError, match='NaN'):
        norm.update(torch.full((1, 3), math.nan))


def test_config_validation_and_roundtrip():
    cfg = PolicyConfig(4, 2, hidden_sizes=[8], activation='relu')
    assert PolicyConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match='activation'):
        PolicyConfig(4, 2, activation='sigmoid')
    with pytest.raises(ValueError, match='unknown PolicyConfig keys'):
        PolicyConfig.from_dict({'obs_dim': 1, 'act_dim': 1, 'width': 3})
    pol = GaussianPolicy(cfg)
    bad = pol.init_params(0)
    bad['mean.bias'] = torch.zeros(3)
    with pytest.raises(ValueError, match='mean.bias'):
        pol.check_params(bad)
