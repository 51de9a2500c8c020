"""
Exact values for the math that mutation testing found unguarded (issue 19).

Each test pins a result against a value computed by hand (or by a formula written out here),
never by calling the function under test twice. Each names the mutant it kills:

* Meta-SGD step sizes applied as their mean (every other test starts with equal step sizes);
* the clipped surrogate with ``maximum`` instead of ``minimum``;
* the ProMP KL penalty in the reversed direction;
* ``GaussianPolicy.sample`` drawing with std ``exp(0.5 * log_std)``;
* a 90 % bootstrap interval reported as 95 %.
"""

import math

from helpers import synthetic_episodes
from maml_robot import stats
from maml_robot.meta.inner import (adapt_batched, compute_advantages, inner_step, InnerConfig,
                                   sgd_step)
from maml_robot.meta.learners import make_learner
from maml_robot.meta.losses import clip_surrogate
from maml_robot.policy import gaussian_kl, GaussianPolicy, PolicyConfig
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
POLICY = GaussianPolicy(PolicyConfig(3, 2, hidden_sizes=(8,)))


def unequal_lr(params):
    """Return per-entry step sizes that all differ: 0.01, 0.02, ... in each tensor."""
    return {k: 0.01 * torch.arange(1, v.numel() + 1, dtype=v.dtype).reshape(v.shape)
            for k, v in params.items()}


# ---------------------------------------------------------------- Meta-SGD (per-entry steps)
def test_meta_sgd_step_is_elementwise_on_a_hand_computed_gradient():
    # loss 0.5 |p|^2 has gradient p, so the step is p - lr * p, entry by entry
    params = {'w': torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)}
    lr = {'w': torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)}
    new = sgd_step(lambda p: 0.5 * (p['w'] ** 2).sum(), params, lr)
    # (the mean step 0.2 would give [0.8, 1.6, 2.4])
    assert torch.allclose(new['w'], torch.tensor([0.9, 1.6, 2.1], dtype=torch.float64),
                          rtol=0, atol=1e-12)


def _pg_grad(params, task, adv):
    """Gradient of the vanilla PG loss by plain autograd (not the torch.func path)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    logp = POLICY.log_prob(leaves, task.observations, task.actions)
    loss = -(logp * adv * task.mask).sum() / task.mask.sum()
    names = sorted(leaves)
    return dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names])))


def test_meta_sgd_inner_step_is_params_minus_lr_times_grad_elementwise():
    params = POLICY.init_params(0)
    episodes = synthetic_episodes(POLICY, params, num_tasks=2, num_rollouts=4, horizon=6,
                                  seed=0)
    lr = unequal_lr(params)
    batched = adapt_batched(POLICY, params, episodes, lr)
    for i in range(2):
        task = episodes.task(i)
        grads = _pg_grad(params, task, compute_advantages(POLICY, task))
        single = inner_step(POLICY, params, task, lr)
        for k in params:
            expected = params[k] - lr[k] * grads[k]
            assert torch.allclose(single[k], expected, rtol=1e-5, atol=1e-7), k
            assert torch.allclose(batched[k][i], expected, rtol=1e-5, atol=1e-7), k


# --------------------------------------------------------------------- ProMP clipped surrogate
@pytest.mark.parametrize('ratio,adv,expected,slope', [
    # positive advantage: the ratio is capped at 1 + eps from above only
    (1.5, 2.0, 2.4, 0.0),     # min(3.0, 1.2 * 2) = 2.4, clipped: no gradient
    (0.5, 2.0, 1.0, 1.0),     # min(1.0, 0.8 * 2) = 1.0, unclipped: d/dlogp = r A = 1.0
    # negative advantage: capped at 1 - eps from below only
    (1.5, -2.0, -3.0, -3.0),  # min(-3.0, -2.4) = -3.0, unclipped: d/dlogp = -3.0
    (0.5, -2.0, -1.6, 0.0),   # min(-1.0, 0.8 * -2) = -1.6, clipped: no gradient
    (1.1, 2.0, 2.2, 2.2),     # inside the range nothing is clipped
])
def test_clip_surrogate_takes_the_pessimistic_bound(ratio, adv, expected, slope):
    old = torch.tensor([[-0.7]], dtype=torch.float64)               # (N=1, T=1)
    logp = (old + math.log(ratio)).requires_grad_()
    value = clip_surrogate(logp, old, torch.tensor([[adv]], dtype=torch.float64),
                           torch.ones(1, 1, dtype=torch.float64), clip_eps=0.2)
    assert value.item() == pytest.approx(expected, abs=1e-12)
    (grad,) = torch.autograd.grad(value, logp)
    assert grad.item() == pytest.approx(slope, abs=1e-12)


def test_clip_surrogate_averages_only_the_valid_steps():
    old = torch.zeros(1, 4, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]], dtype=torch.float64))
    adv = torch.tensor([[2.0, 2.0, -2.0, 100.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    value = clip_surrogate(logp, old, adv, mask, clip_eps=0.2)
    assert value.item() == pytest.approx((2.4 + 1.0 - 3.0) / 3, abs=1e-12)


# ------------------------------------------------------------------------------- KL penalty
def _kl_closed_form(m_p, s_p, m_q, s_q):
    """KL(N(m_p, s_p^2) || N(m_q, s_q^2)), written out."""
    return math.log(s_q / s_p) + (s_p ** 2 + (m_p - m_q) ** 2) / (2 * s_q ** 2) - 0.5


def test_gaussian_kl_matches_the_closed_form_in_its_direction():
    # p = N(0, 1), q = N(1, 2^2): KL(p||q) = ln 2 + 2/8 - 1/2, KL(q||p) = -ln 2 + 5/2 - 1/2
    one = torch.zeros(1, dtype=torch.float64)
    kl_pq = gaussian_kl(one * 0, one * 0, one + 1, one + math.log(2.0))
    kl_qp = gaussian_kl(one + 1, one + math.log(2.0), one * 0, one * 0)
    assert kl_pq.item() == pytest.approx(math.log(2.0) - 0.25, abs=1e-12)
    assert kl_qp.item() == pytest.approx(2.0 - math.log(2.0), abs=1e-12)
    # two action dims are summed
    m_p, s_p, m_q, s_q = (0.3, -1.2), (0.5, 1.5), (-0.4, 0.1), (0.8, 0.6)
    kl = gaussian_kl(torch.tensor(m_p, dtype=torch.float64),
                     torch.log(torch.tensor(s_p, dtype=torch.float64)),
                     torch.tensor(m_q, dtype=torch.float64),
                     torch.log(torch.tensor(s_q, dtype=torch.float64)))
    expected = sum(_kl_closed_form(*args) for args in zip(m_p, s_p, m_q, s_q))
    assert kl.item() == pytest.approx(expected, abs=1e-12)


def test_promp_penalty_is_kl_of_the_old_policy_to_the_current_one():
    params = POLICY.init_params(0)                      # log_std 0: std 1, mean bias 0
    learner = make_learner('promp', POLICY, params, InnerConfig(lr=0.1))
    pre = synthetic_episodes(POLICY, params, 2, 4, 6, seed=0)
    post = synthetic_episodes(POLICY, learner.adapt(pre), 2, 4, 6, seed=1)
    # the anchor differs only by a constant mean shift and its std, so the KL is the same at
    # every observation: per action dim KL(N(m + d, s_old^2) || N(m, 1))
    shift, s_old = (0.5, -0.3), (0.6, 1.7)
    old = {k: v.clone() for k, v in params.items()}
    old['mean.bias'] = old['mean.bias'] + torch.tensor(shift)
    old['log_std'] = torch.log(torch.tensor(s_old))
    expected = sum(_kl_closed_form(d, s, 0.0, 1.0) for d, s in zip(shift, s_old))
    reverse = sum(_kl_closed_form(0.0, 1.0, d, s) for d, s in zip(shift, s_old))
    assert abs(expected - reverse) > 0.1           # the two directions are told apart
    losses = {}
    for coeff in (0.0, 1.0):
        learner.kl_coeff = coeff
        loss, info = learner.meta_loss(pre, post, old_params=old)
        losses[coeff] = loss.item()
        assert info['kl_pre'] == pytest.approx(expected, rel=1e-5)
    # the penalty itself (not only the reported number) is coeff * KL(pi_old || pi_theta)
    assert losses[1.0] - losses[0.0] == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------------------- policy sampling
def test_sample_uses_std_exp_log_std_and_closed_form_log_probs():
    params = POLICY.init_params(0)
    log_std = torch.tensor([-0.7, 0.4])
    params['log_std'] = log_std
    obs = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))   # (5, obs_dim)
    actions, logp = POLICY.sample(params, obs, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(7))  # the same draws
    mean = POLICY.mean_action(params, obs)
    std = torch.tensor([math.exp(-0.7), math.exp(0.4)])
    assert torch.allclose(actions, mean + std * noise, rtol=0, atol=1e-6)
    # log N(a; m, s) = -z^2 / 2 - log s - log(2 pi) / 2 with z = the normal draw
    closed = (-0.5 * noise ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert torch.allclose(logp, closed, rtol=0, atol=1e-5)


def test_batched_sample_uses_each_task_std():
    params = POLICY.init_params(0)
    params_b = {k: torch.stack([v, v]) for k, v in params.items()}
    params_b['log_std'] = torch.tensor([[-0.7, 0.4], [0.9, -1.3]])
    obs = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(1))  # (B, N, obs_dim)
    actions, logp = POLICY.batched_sample(params_b, obs,
                                          generator=torch.Generator().manual_seed(7))
    noise = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(7))
    for b in range(2):
        mean = POLICY.mean_action(params, obs[b])
        std = params_b['log_std'][b].exp()
        assert torch.allclose(actions[b], mean + std * noise[b], rtol=0, atol=1e-6)
        closed = (-0.5 * noise[b] ** 2 - params_b['log_std'][b]
                  - 0.5 * math.log(2 * math.pi)).sum(-1)
        assert torch.allclose(logp[b], closed, rtol=0, atol=1e-5)


# ------------------------------------------------------------------- bootstrap interval level
@pytest.fixture
def draws_0_to_200(monkeypatch):
    """
    Make every bootstrap see the draws 0, 1, ..., 200.

    One seed; with one task (value 1) draw i counts the task i times, with two tasks it counts
    the first once and the second i times.
    """
    def counts(n_seeds, n_tasks, n_boot, rng):
        steps = np.arange(201, dtype=np.float64)
        task_counts = {1: steps[:, None], 2: np.stack([np.ones(201), steps], axis=1)}[n_tasks]
        return np.ones((201, n_seeds)), task_counts
    monkeypatch.setattr(stats, 'resample_counts', counts)


def test_default_interval_is_95_percent_at_the_exact_percentiles(draws_0_to_200):
    assert stats.DEFAULT_CONFIDENCE == 0.95
    rng = np.random.default_rng(0)
    # 2.5 % and 97.5 % of 0..200 lie on the draws 5 and 195 (90 % would be 10 and 190)
    ci = stats.bootstrap_ci([[1.0]], rng=rng)
    assert (ci.mean, ci.low, ci.high) == pytest.approx((1.0, 5.0, 195.0), abs=1e-9)
    ci = stats.bootstrap_ci([[1.0]], rng=rng, confidence=0.95)
    assert (ci.low, ci.high) == pytest.approx((5.0, 195.0), abs=1e-9)
    ci = stats.bootstrap_ci([[1.0]], rng=rng, confidence=0.9)
    assert (ci.low, ci.high) == pytest.approx((10.0, 190.0), abs=1e-9)
    ci = stats.negative_adaptation_rate([[1.0]], [[0.0]], 0.0, rng=rng)
    assert (ci.low, ci.high) == pytest.approx((5.0, 195.0), abs=1e-9)


def test_normalized_score_interval_is_95_percent(draws_0_to_200):
    # tasks: centred returns (0, 1), oracle-random gaps (1, 0); draw i counts them (1, i), so
    # its score is (i * 1 / 2) / (1 * 1 / 2) = i; the point estimate is 0.5 / 0.5 = 1
    ci = stats.bootstrap_normalized([[0.0, 1.0]], [0.0, 0.0], [1.0, 0.0],
                                    rng=np.random.default_rng(0))
    assert (ci.mean, ci.low, ci.high) == pytest.approx((1.0, 5.0, 195.0), abs=1e-9)
