"""Tests for the adaptation operators (pg, hill_climb, es) and their evaluation loop."""

from helpers import synthetic_episodes
from maml_robot.episodes import Episodes
from maml_robot.meta.inner import inner_step
from maml_robot.meta.operators import (centered_ranks, EvolutionStrategies, HillClimb,
                                       MeanActionPolicy, PolicyGradient)
from maml_robot.operator_eval import (make_operator, operator_curve, OperatorEvalConfig,
                                      parse_settings)
from maml_robot.policy import GaussianPolicy, PolicyConfig
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
TARGET = {'mean.weight': torch.full((2, 3), 0.5), 'mean.bias': torch.tensor([0.3, -0.2])}


def toy_params():
    return {'mean.weight': torch.zeros(2, 3), 'mean.bias': torch.zeros(2),
            'log_std': torch.zeros(2)}


def fitness(params):
    """Toy return: minus the squared distance to TARGET (log_std ignored)."""
    return -sum(float(((params[k] - t) ** 2).sum()) for k, t in TARGET.items())


def noisy_returns(candidates, episodes, rng, noise):
    return [fitness(c) + noise * rng.standard_normal(episodes) for c in candidates]


def test_pg_equals_inner_step():
    policy = GaussianPolicy(PolicyConfig(4, 2, hidden_sizes=(8,)))
    params = policy.init_params(0)
    episodes = synthetic_episodes(policy, params, 1, 6, 10, seed=0).task(0)
    op = PolicyGradient(policy, 0.1, episodes=6)
    assert op.ask(params, np.random.default_rng(0)) == [params]
    new = op.tell(params, [params], [episodes])
    want = inner_step(policy, params, episodes, 0.1, first_order=True)
    for k in params:
        assert torch.allclose(new[k], want[k])
    assert not torch.equal(new['mean.bias'], params['mean.bias'])


def test_ask_is_pure_and_bounded():
    params = toy_params()
    before = {k: v.clone() for k, v in params.items()}
    op = HillClimb(sigma=1.0, batch=3, max_delta=0.05)
    first = op.ask(params, np.random.default_rng(3))
    again = op.ask(params, np.random.default_rng(3))
    assert len(first) == 4 and first[0] is params
    for a, b in zip(first[1:], again[1:]):
        for k in params:
            assert torch.equal(a[k], b[k])
        assert max(float((a[k] - params[k]).abs().max()) for k in params) <= 0.05 + 1e-7
        assert torch.equal(a['log_std'], params['log_std'])       # never perturbed
    for k in params:
        assert torch.equal(params[k], before[k])


def test_perturbations_do_not_depend_on_the_dict_order():
    params = toy_params()
    shuffled = {k: params[k] for k in reversed(list(params))}
    for op in (HillClimb(sigma=0.1, batch=2), EvolutionStrategies(sigma=0.1, pairs=2)):
        a = op.ask(params, np.random.default_rng(5))
        b = op.ask(shuffled, np.random.default_rng(5))
        assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in params)


def test_hill_climb_improves_and_never_accepts_worse():
    op = HillClimb(sigma=0.05, batch=4, episodes=1)
    params, rng = toy_params(), np.random.default_rng(0)
    start = fitness(params)
    for _ in range(40):
        candidates = op.ask(params, rng)
        new = op.update(params, candidates, noisy_returns(candidates, 1, rng, 0.0))
        assert fitness(new) >= fitness(params)
        params = new
    assert fitness(params) > start + 0.5 * abs(start)


def test_hill_climb_margin_rejects_a_gain_within_the_noise():
    op = HillClimb(sigma=0.1, batch=2, episodes=4, z=1.0)
    params = toy_params()
    candidates = op.ask(params, np.random.default_rng(0))
    spread = np.array([-1.0, 1.0, -1.0, 1.0])                    # sd 1.155 per candidate
    margin = 1.0 * np.std(spread, ddof=1) * np.sqrt(2 / 4)       # 0.816
    assert op.margin([spread, spread, spread]) == pytest.approx(margin)
    small = [spread, spread + 0.5 * margin, spread + 0.2]
    kept = op.update(params, candidates, small)                  # within the noise: keep
    assert all(torch.equal(kept[k], params[k]) for k in params)
    paired = HillClimb(sigma=0.1, batch=2, episodes=4, z=1.0, paired=True)
    assert paired.margin(small, best=1) == pytest.approx(0.0)    # same goals: no spread
    assert paired.update(params, candidates, small)['mean.bias'] is candidates[1]['mean.bias']
    large = [spread, spread + 0.5 * margin, spread + 1.5 * margin]
    chosen = op.update(params, candidates, large)
    assert all(torch.equal(chosen[k], candidates[2][k]) for k in params)


def test_es_step_equals_hand_computed_antithetic_estimate():
    op = EvolutionStrategies(sigma=0.1, pairs=2, episodes=1, lr=0.5, space='bias')
    params = toy_params()
    candidates = op.ask(params, np.random.default_rng(7))
    draws = np.random.default_rng(7)
    e1, e2 = (torch.from_numpy(draws.standard_normal(2)).float() for _ in range(2))
    assert torch.allclose(candidates[0]['mean.bias'], 0.1 * e1)
    assert torch.allclose(candidates[3]['mean.bias'], -0.1 * e2)
    assert torch.equal(candidates[0]['mean.weight'], params['mean.weight'])
    returns = [[1.0], [0.0], [3.0], [2.0]]       # ranks 1, 0, 3, 2 -> -1/6, -1/2, 1/2, 1/6
    new = op.update(params, candidates, returns)
    grad = (1 / (2 * 2 * 0.1)) * ((1 / 3) * e1 + (1 / 3) * e2)
    assert torch.allclose(new['mean.bias'], 0.5 * grad, atol=1e-6)
    bounded = EvolutionStrategies(sigma=0.1, pairs=2, episodes=1, lr=0.5, space='bias',
                                  max_delta=0.01).update(params, candidates, returns)
    assert float(bounded['mean.bias'].abs().max()) == pytest.approx(0.01)
    assert torch.allclose(bounded['mean.bias'] / 0.01,
                          new['mean.bias'] / new['mean.bias'].abs().max(), atol=1e-5)


def test_centered_ranks_and_es_ascent():
    assert np.allclose(centered_ranks([5.0, 1.0, 5.0]), [0.25, -0.5, 0.25])
    op = EvolutionStrategies(sigma=0.05, pairs=4, episodes=2, lr=0.05)
    params, rng = toy_params(), np.random.default_rng(1)
    start = fitness(params)
    for _ in range(30):
        candidates = op.ask(params, rng)
        params = op.update(params, candidates, noisy_returns(candidates, 2, rng, 0.01))
    assert fitness(params) > start + 0.5 * abs(start)


def test_mean_action_policy_has_no_noise():
    policy = GaussianPolicy(PolicyConfig(4, 2, hidden_sizes=(8,)))
    params = policy.init_params(0)
    obs = torch.randn(5, 4)
    actions, logp = MeanActionPolicy(policy).sample(params, obs, torch.Generator())
    assert torch.equal(actions, policy.mean_action(params, obs))
    assert logp.shape == (5,) and MeanActionPolicy(policy).config is policy.config


class ToySampler:
    """Episodes of one step whose reward is the toy fitness of each task's parameters."""

    def sample(self, policy, params_b, tasks, rollouts, *, seed=None):
        rng = np.random.default_rng(seed)
        rewards = torch.tensor([[fitness({k: v[b] for k, v in params_b.items()})
                                 + 0.01 * rng.standard_normal() for _ in range(rollouts)]
                                for b in range(len(tasks))], dtype=torch.float32)[..., None]
        zeros = torch.zeros(rewards.shape + (1,))
        return Episodes(zeros, zeros, rewards, torch.ones_like(rewards),
                        torch.zeros_like(rewards))


def test_operator_curve_counts_live_episodes_and_improves():
    cfg = OperatorEvalConfig(budget=50, measure_rollouts=3, measure=('mean',))
    op = HillClimb(sigma=0.1, batch=4, episodes=2, z=0.0)           # 10 episodes a round
    out = operator_curve(op, None, toy_params(), ['a', 'b'], ToySampler(), cfg, seed=0)
    assert out['episodes'].tolist() == [0, 10, 20, 30, 40, 50]
    assert out['returns']['mean'].shape == (2, 6)
    assert out['env_steps'][:, -1].tolist() == [50, 50]
    assert (out['returns']['mean'][:, -1] > out['returns']['mean'][:, 0]).all()
    phases = [(HillClimb(sigma=0.1, batch=1, episodes=1), 5), (op, 10)]  # 2 rounds of 2, 1 of 10
    out = operator_curve(phases, None, toy_params(), ['a'], ToySampler(), cfg, seed=0)
    assert out['episodes'].tolist() == [0, 2, 4, 14]
    with pytest.raises(ValueError, match='needs 10 live episodes'):
        operator_curve(op, None, toy_params(), ['a'], ToySampler(),
                       OperatorEvalConfig(budget=9), seed=0)


def test_make_operator_converts_settings_and_rejects_unknown():
    settings = parse_settings(['sigma=0.03', 'pairs=3', 'space=last', 'max_delta=None'])
    op = make_operator('es', None, 0.1, {}, settings)
    assert (op.sigma, op.pairs, op.space, op.max_delta) == (0.03, 3, 'last', None)
    with pytest.raises(ValueError, match='no setting'):
        make_operator('hill_climb', None, 0.1, {}, {'lr': '1'})
    with pytest.raises(ValueError, match='unknown'):
        make_operator('cma', None, 0.1, {}, {})
    with pytest.raises(ValueError, match='KEY=VALUE'):
        parse_settings(['sigma'])


@pytest.mark.slow
def test_eval_cli_runs_a_derivative_free_operator_within_the_budget(tmp_path):
    from maml_robot.cli import main
    from maml_robot.results import read_json
    from test_evaluate import _fresh_checkpoint

    ckpt = _fresh_checkpoint(tmp_path / 'c.safetensors')
    rc = main(['eval', '--checkpoint', str(ckpt), '--tasks', '2', '--rollouts', '2',
               '--workers', '1', '--device', 'cpu', '--bootstrap', '50',
               '--adaptation', 'hill_climb', '--budget', '13',
               '--adaptation-args', 'batch=2', 'episodes=2', 'sigma=0.1',
               '--json', str(tmp_path / 'r.json')])
    assert rc == 0
    (result,) = read_json(tmp_path / 'r.json').results
    assert result.config['live_episodes'] == [0, 6, 12]               # 2 rounds of 3 x 2
    assert result.config['adaptation'] == 'hill_climb' and result.returns.shape == (1, 2, 3)
    np.testing.assert_allclose(result.env_steps[0, :, -1], 12 * 50)
