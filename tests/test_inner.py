"""Tests for the inner-loop update: purity, batching, masks, Meta-SGD, baseline, returns."""

from helpers import synthetic_episodes
from maml_robot.episodes import Episodes
from maml_robot.meta.baseline import baseline_features, fit_linear_baseline
from maml_robot.meta.inner import adapt_batched, compute_advantages, inner_step
from maml_robot.meta.losses import pg_surrogate
from maml_robot.meta.returns import discounted_returns, gae_advantages
from maml_robot.policy import GaussianPolicy, PolicyConfig, stack_params
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def setup():
    pol = GaussianPolicy(PolicyConfig(4, 2, hidden_sizes=(16, 16)))
    params = pol.init_params(0)
    eps = synthetic_episodes(pol, params, num_tasks=3, num_rollouts=6, horizon=12, seed=0)
    return pol, params, eps


def objective(pol, params, eps, adv):
    return pg_surrogate(pol.log_prob(params, eps.observations, eps.actions), adv, eps.mask)


def test_lr_zero_is_clone_and_inputs_untouched(setup):
    pol, params, eps = setup
    before = {k: v.clone() for k, v in params.items()}
    new = inner_step(pol, params, eps.task(0), 0.0)
    for k in params:
        assert torch.equal(new[k], before[k])
        assert torch.equal(params[k], before[k])
    assert new is not params


def test_step_improves_surrogate(setup):
    pol, params, eps = setup
    task = eps.task(0)
    adv = compute_advantages(pol, task)
    new = inner_step(pol, params, task, 0.05, first_order=True)
    assert objective(pol, new, task, adv) > objective(pol, params, task, adv) + 1e-4


def test_adapt_batched_equals_per_task_loop(setup):
    pol, params, eps = setup
    batched = adapt_batched(pol, params, eps, 0.1)
    for i in range(3):
        single = inner_step(pol, params, eps.task(i), 0.1)
        for k in params:
            assert torch.allclose(batched[k][i], single[k], atol=1e-6)
    again = adapt_batched(pol, batched, eps, 0.1, params_batched=True)
    two = inner_step(pol, inner_step(pol, params, eps.task(2), 0.1), eps.task(2), 0.1)
    assert torch.allclose(again['mean.weight'][2], two['mean.weight'], atol=1e-6)


def test_meta_sgd_lr_gets_gradient_and_scales_step(setup):
    pol, params, eps = setup
    lr = {k: torch.full_like(v, 0.1, requires_grad=True) for k, v in params.items()}
    new = adapt_batched(pol, params, eps, lr)
    ref = adapt_batched(pol, params, eps, 0.1)
    assert torch.allclose(new['hidden.1.weight'], ref['hidden.1.weight'], atol=1e-6)
    sum(v.pow(2).sum() for v in new.values()).backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in lr.values())
    with pytest.raises(ValueError, match='lacks'):
        inner_step(pol, params, eps.task(0), {'log_std': torch.ones(2)})


def test_second_order_vs_first_order_gradients(setup):
    pol, params, eps = setup
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    task = eps.task(1)
    adv = compute_advantages(pol, task)
    grads = {}
    for fo in (False, True):
        new = inner_step(pol, p, task, 0.5, first_order=fo)
        loss = -objective(pol, new, task, adv)
        grads[fo] = torch.autograd.grad(loss, list(p.values()))
    diff = sum((a - b).abs().sum() for a, b in zip(grads[False], grads[True]))
    assert diff > 1e-4  # the second-order term is really there
    # first order: grad wrt theta equals grad of the post loss wrt theta'
    new = {k: v.detach().requires_grad_() for k, v in inner_step(pol, p, task, 0.5).items()}
    direct = torch.autograd.grad(-objective(pol, new, task, adv), list(new.values()))
    for a, b in zip(grads[True], direct):
        assert torch.allclose(a, b, atol=1e-6)


def test_unequal_lengths_use_mask():
    pol = GaussianPolicy(PolicyConfig(3, 1, hidden_sizes=(8,)))
    params = pol.init_params(0)
    gen = torch.Generator().manual_seed(0)
    rollouts = []
    for length in (5, 9, 2):
        obs = torch.randn(length, 3, generator=gen)
        act = torch.randn(length, 1, generator=gen)
        rollouts.append({'observations': obs, 'actions': act,
                         'rewards': torch.randn(length, generator=gen),
                         'log_probs': pol.log_prob(params, obs, act).detach()})
    eps = Episodes.from_rollouts(rollouts)
    assert eps.mask.sum(-1).tolist() == [5.0, 9.0, 2.0]
    new = inner_step(pol, params, eps, 0.1)
    # garbage in the padded steps must not change the update
    dirty = Episodes(eps.observations + 50 * (1 - eps.mask)[..., None],
                     eps.actions - 7 * (1 - eps.mask)[..., None],
                     eps.rewards + 100 * (1 - eps.mask), eps.mask, eps.log_probs)
    new2 = inner_step(pol, params, dirty, 0.1)
    for k in new:
        assert torch.allclose(new[k], new2[k], atol=1e-5)
        assert torch.isfinite(new[k]).all()
    assert not torch.allclose(new['mean.weight'], params['mean.weight'])


def test_returns_and_gae():
    r = torch.tensor([[1.0, 2.0, 3.0, 9.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    ret = discounted_returns(r, m, 0.5)
    assert torch.allclose(ret, torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0, 0.0]]))
    v = torch.tensor([[0.5, 1.0, 2.0, 4.0]])
    assert torch.allclose(gae_advantages(r, v, m, 0.5, 1.0), (ret - v) * m, atol=1e-6)
    one_step = gae_advantages(r, v, m, 0.5, 0.0)
    assert torch.allclose(one_step, torch.tensor([[1 + 0.5 - 0.5, 2 + 1 - 1, 3 - 2.0, 0]]))


def test_linear_baseline_fits_linear_returns_and_is_batched():
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 5, 8, 3, generator=gen, dtype=torch.float64)
    feats = baseline_features(obs)
    w = torch.randn(2, feats.shape[-1], generator=gen, dtype=torch.float64)
    target = torch.einsum('bntf,bf->bnt', feats, w)
    mask = torch.ones(2, 5, 8, dtype=torch.float64)
    values = fit_linear_baseline(feats, target, mask, reg_coeff=1e-10)
    assert torch.allclose(values, target, atol=1e-4)
    one = fit_linear_baseline(feats[1], target[1], mask[1], reg_coeff=1e-10)
    assert torch.allclose(one, values[1], atol=1e-6)


def test_advantages_normalized_per_task(setup):
    pol, _, eps = setup
    adv = compute_advantages(pol, eps)
    assert torch.allclose(adv.mean((-2, -1)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(adv.std((-2, -1), unbiased=False), torch.ones(3), atol=1e-3)
    with pytest.raises(ValueError, match='baseline'):
        compute_advantages(pol, eps, baseline='value_net')


def test_batched_params_input(setup):
    pol, params, eps = setup
    pb = stack_params([params] * 3)
    a = adapt_batched(pol, pb, eps, 0.1, params_batched=True)
    b = adapt_batched(pol, params, eps, 0.1)
    assert torch.allclose(a['log_std'], b['log_std'], atol=1e-6)


def test_non_finite_episodes_are_refused(setup):
    pol, params, eps = setup
    task = eps.task(0)
    bad = Episodes(task.observations, task.actions, task.rewards.clone(), task.mask,
                   task.log_probs)
    bad.rewards[0, 3] = float('nan')
    with pytest.raises(ValueError, match='rewards contains NaN'):
        inner_step(pol, params, bad, 0.1)
