"""OnlineAdapter with each adaptation operator (pg, hill_climb, es) on the real reacher sim."""

import dataclasses
import math
import warnings

from maml_robot import evaluate, online
from maml_robot.checkpoint import save_checkpoint
from maml_robot.commands.demo import pick_task
from maml_robot.meta.operators import EvolutionStrategies, HillClimb, PolicyGradient
from maml_robot.online.guard import bounded_change
from maml_robot.operator_eval import make_operator
from maml_robot.scenario import load_scenario
from maml_robot.sim.world import World
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
MODEL = 'reacher'
TOL = 1e-5    # relative slack of an L2 norm recomputed in float32


class Recorder:
    """The adapter's own operator, keeping every ``tell``: (params, candidates, episodes, new)."""

    def __init__(self, op):
        self.op, self.calls, self.saved = op, [], []

    def __getattr__(self, name):
        return getattr(self.op, name)

    def tell(self, params, candidates, episodes):
        new = self.op.tell(params, candidates, episodes)
        self.calls.append((params, candidates, episodes, new))
        return new


def rehearse(episodes, seed=0, **config):
    """Adapt the shipped reacher online on the demo's task; return adapter, recorder, history."""
    config = {'synchronous': True, 'ramp_in_steps': 0, 'fade_in_steps': 0,
              'rollouts_per_step': 2, **config}
    adapter = online.load_adapter(MODEL, online.OnlineConfig(**config), seed=seed,
                                  log=lambda m: None)
    adapter._operator = recorder = Recorder(adapter._operator)
    adapter._persist_fn = lambda params, info: recorder.saved.append((params, info))
    scenario = load_scenario('reacher')
    world = World(scenario, task=pick_task(scenario)[1])
    rng, history = np.random.default_rng(seed), []
    try:
        for _ in range(episodes):     # one episode at a time: the parameters after each
            online.run_in_process(adapter, world, 1, rng)
            history.append((adapter.params, dict(adapter.stats)))
    finally:
        world.close()
    return adapter, recorder, history


def distance(a, b):
    return float(torch.sqrt(sum(((a[k] - b[k]).double() ** 2).sum() for k in a)))


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def check_deterministic(policy, params, episodes):
    """Check that ``params``' mean action acted the episodes: no exploration noise at all."""
    valid = episodes.mask.bool()
    assert torch.all(episodes.log_probs == 0.0)
    with torch.no_grad():
        mean = policy.mean_action(params, episodes.observations)
    # batched here, one step at a time there: equal up to float32 rounding (noise is ~0.1-1)
    torch.testing.assert_close(episodes.actions[valid], mean[valid], rtol=0.0, atol=1e-5)


def check_rollbacks(history, meta):
    """Every rollback restored the parameters the judged update had replaced; return how many."""
    seen = 0
    for i in range(1, len(history)):
        params, stats = history[i]
        if stats['reverts_to_meta'] > history[i - 1][1]['reverts_to_meta']:
            assert params is meta
            seen += 1
        elif stats['rollbacks'] > history[i - 1][1]['rollbacks']:
            before = [p for p, s in history[:i] if s['adaptations'] < stats['adaptations']]
            assert params is (before[-1] if before else meta), f'episode {i}'
            seen += 1
    return seen


def check_persisted(adapter, saved, history):
    """Check that the accepted updates, and only they, were persisted with the reference."""
    stats = adapter.stats
    accepted = (stats['adaptations'] - stats['rollbacks'] - stats['reverts_to_meta']
                - int(adapter._probation))
    assert len(saved) == accepted >= 1
    for params, info in saved:
        assert any(params is p for p, _ in history)
        assert info['meta_return'] == stats['meta_return'] and math.isfinite(info['meta_return'])
        assert math.isfinite(info['meta_return_var'])


def test_hill_climb_acts_deterministically_bounded_and_accepts_only_improvements():
    max_delta = 0.5
    adapter, recorder, history = rehearse(
        30, adaptation='hill_climb', adaptation_args='batch=2,episodes=1,sigma=0.05',
        max_param_delta=max_delta, rollback_margin=0.0, rollback_z=0.0, divergence_margin=10.0)
    policy, op = adapter.policy, recorder.op
    assert isinstance(op, HillClimb) and (op.batch, op.episodes, op.sigma) == (2, 1, 0.05)
    assert adapter.stats['adaptation'] == 'hill_climb'
    assert len(recorder.calls) >= 4
    changed = 0
    for params, candidates, episodes, new in recorder.calls:
        assert len(candidates) == 3 and candidates[0] is params   # the incumbent, afresh
        for candidate, eps in zip(candidates, episodes):
            assert eps.num_rollouts == 1
            assert distance(candidate, params) <= max_delta * (1 + TOL)
            check_deterministic(policy, candidate, eps)
        means = [float(e.returns(torch.float64).mean()) for e in episodes]
        best = 1 + int(np.argmax(means[1:]))
        if same(new, params):
            returns = [e.returns(torch.float64).numpy() for e in episodes]
            assert means[best] <= means[0] + op.margin(returns, best)
        else:
            changed += 1
            assert means[best] > means[0] and same(new, candidates[best])
    stats = adapter.stats
    assert changed == stats['adaptations'] >= 2
    assert stats['rounds_kept'] == len(recorder.calls) - changed
    undone = stats['rollbacks'] + stats['reverts_to_meta']
    assert check_rollbacks(history, adapter.meta_params) == undone >= 1
    check_persisted(adapter, recorder.saved, history)
    if adapter._batch:     # the current parameters' episodes: their mean action as well
        check_deterministic(policy, adapter.params, adapter.episodes_tensor(adapter._batch))
    before = adapter.params
    assert adapter.warm_up() >= 0.0 and adapter.params is before


def test_hill_climb_keeps_the_parameters_when_no_gain_beats_the_noise():
    adapter, recorder, _ = rehearse(
        24, adaptation='hill_climb', adaptation_args='batch=2,episodes=2,sigma=0.05',
        max_param_delta=0.5)
    assert len(recorder.calls) >= 3
    for params, candidates, episodes, new in recorder.calls:
        returns = [e.returns(torch.float64).numpy() for e in episodes]     # (3, 2)
        means = [r.mean() for r in returns]
        best = 1 + int(np.argmax(means[1:]))
        gain = means[best] - means[0]
        assert same(new, params) == (gain <= recorder.op.margin(returns, best))
    assert adapter.stats['rounds_kept'] >= 1
    assert adapter.stats['rounds_kept'] + adapter.stats['adaptations'] == len(recorder.calls)
    # a kept round changes nothing: the meta-parameters act until a candidate clearly wins
    if adapter.stats['adaptations'] == 0:
        assert adapter.params is adapter.meta_params


def test_es_steps_from_antithetic_candidates_within_the_bound():
    max_delta = 0.3
    adapter, recorder, history = rehearse(
        30, adaptation='es', adaptation_args='pairs=2,episodes=1,sigma=0.05,lr=0.5',
        max_param_delta=max_delta, rollback_margin=0.0, rollback_z=0.0, divergence_margin=10.0)
    op = recorder.op
    assert isinstance(op, EvolutionStrategies) and (op.pairs, op.lr) == (2, 0.5)
    assert len(recorder.calls) >= 3
    swapped = [p for p, _ in history]
    for params, candidates, episodes, new in recorder.calls:
        assert len(candidates) == 4
        for i, (candidate, eps) in enumerate(zip(candidates, episodes)):
            assert distance(candidate, params) <= max_delta * (1 + TOL)
            check_deterministic(adapter.policy, candidate, eps)
            if i % 2 == 0:    # antithetic: the pair's perturbations are opposite
                mirror = candidates[i + 1]
                for k in params:
                    torch.testing.assert_close(candidate[k] - params[k],
                                               params[k] - mirror[k])
        # the parameters swapped in are the ES step, bounded to max_param_delta
        step = bounded_change(params, new, max_delta)
        assert distance(step, params) <= max_delta * (1 + TOL)
        assert any(same(step, p) for p in swapped)
    stats = adapter.stats
    assert stats['adaptations'] == len(recorder.calls) and stats['rounds_kept'] == 0
    undone = stats['rollbacks'] + stats['reverts_to_meta']
    assert check_rollbacks(history, adapter.meta_params) == undone >= 1
    check_persisted(adapter, recorder.saved, history)


def test_pg_explores_and_its_update_is_bounded():
    max_delta = 0.05
    adapter, recorder, history = rehearse(6, adaptation='pg', max_param_delta=max_delta,
                                          steps_per_batch=2)
    op = recorder.op
    assert isinstance(op, PolicyGradient) and op.steps_per_batch == 2 and op.episodes == 2
    params, candidates, episodes, new = recorder.calls[0]
    assert len(candidates) == 1 and candidates[0] is params and episodes[0].num_rollouts == 2
    valid = episodes[0].mask.bool()
    assert torch.all(episodes[0].log_probs[valid] != 0.0)      # sampled from the Gaussian
    with torch.no_grad():
        mean = adapter.policy.mean_action(params, episodes[0].observations)
    assert not torch.equal(episodes[0].actions[valid], mean[valid])
    assert distance(new, params) > max_delta                    # so the bound acts
    first = next(p for p, s in history if s['adaptations'] == 1)
    assert abs(distance(first, params) - max_delta) <= max_delta * TOL


def fresh_with(tmp_path, adaptation):
    """Return a fresh reacher checkpoint whose ``adaptation`` record is ``adaptation``."""
    from maml_robot.online import fresh_checkpoint
    path = tmp_path / 'meta.safetensors'
    ckpt = fresh_checkpoint(load_scenario('reacher'), seed=0)
    save_checkpoint(path, dataclasses.replace(ckpt, adaptation=adaptation))
    return path


def test_operator_defaults_to_the_checkpoint_and_settings_override_it(tmp_path):
    shipped = online.load_adapter(MODEL, online.OnlineConfig(), log=lambda m: None)
    assert shipped.stats['adaptation'] == 'pg'        # trained for the policy-gradient step
    path = fresh_with(tmp_path, {'operator': 'es', 'settings': {'pairs': 3, 'sigma': 0.01}})
    own = online.load_adapter(path, online.OnlineConfig(), log=lambda m: None)._operator
    assert (own.name, own.pairs, own.sigma, own.episodes) == ('es', 3, 0.01, 2)
    tuned = online.load_adapter(path, online.OnlineConfig(adaptation_args='sigma=0.02'),
                                log=lambda m: None)._operator
    assert (tuned.pairs, tuned.sigma) == (3, 0.02)
    other = online.load_adapter(path, online.OnlineConfig(adaptation='hill_climb'),
                                log=lambda m: None)._operator
    assert other == HillClimb()                       # es's settings are not hill_climb's
    bad = fresh_with(tmp_path, {'operator': 'cma'})
    with pytest.raises(ValueError, match="adaptation .*'cma'.* is malformed"):
        online.load_adapter(bad, online.OnlineConfig())
    with pytest.raises(ValueError, match='adaptation_args .* pg takes'):
        online.load_adapter(MODEL, online.OnlineConfig(adaptation_args='sigma=0.1'))
    with pytest.raises(ValueError, match="adaptation_args 'sigma'.*KEY=VALUE"):
        online.load_adapter(MODEL, online.OnlineConfig(adaptation='es', adaptation_args='sigma'))
    with pytest.raises(ValueError, match='no setting'):
        online.load_adapter(MODEL, online.OnlineConfig(adaptation='es', adaptation_args='b=1'))
    with pytest.raises(ValueError, match=r"adaptation: expected one of \('', 'pg', 'hill_climb', "
                                         r"'es'\), got 'cma'"):
        online.OnlineConfig(adaptation='cma')


def test_the_old_inner_steps_name_still_works_with_a_warning():
    with pytest.warns(FutureWarning, match='steps_per_batch'):
        assert online.OnlineConfig(inner_steps=3).steps_per_batch == 3
    with warnings.catch_warnings():
        warnings.simplefilter('error')              # the defaults warn about nothing
        assert online.OnlineConfig().steps_per_batch == 1
        assert online.OnlineConfig(steps_per_batch=2, inner_steps=2).steps_per_batch == 2
    with pytest.raises(ValueError, match='inner_steps=2 and steps_per_batch=3 disagree'):
        online.OnlineConfig(inner_steps=2, steps_per_batch=3)
    with pytest.raises(ValueError, match=r'steps_per_batch: expected an integer in \[1, 100\], '
                                         'got 0'):
        online.OnlineConfig(steps_per_batch=0)
    with pytest.warns(FutureWarning, match='steps_per_batch'):
        assert evaluate.AdaptConfig(1, 2, inner_steps=3).steps_per_batch == 3
    with pytest.raises(ValueError, match='disagree'):
        evaluate.AdaptConfig(1, 2, inner_steps=3, steps_per_batch=2)
    with pytest.raises(ValueError, match='inner_steps must be an integer >= 1; got 0'):
        evaluate.AdaptConfig(1, 2, inner_steps=0)
    with pytest.warns(FutureWarning, match='steps_per_batch'):
        assert make_operator('pg', None, 0.1, {}, {'inner_steps': '2'}).steps_per_batch == 2
