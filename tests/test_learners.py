"""
Tests for the outer learners.

They train every meta-parameter, respect their constraints, and save / restore their whole
state as tensors + JSON for an exact resume.
"""

import json

from helpers import synthetic_episodes
from maml_robot.meta.inner import InnerConfig
from maml_robot.meta.learners import config_from_dict, make_learner
from maml_robot.meta.promp import ProMPConfig
from maml_robot.policy import GaussianPolicy, PolicyConfig
import pytest
import safetensors.torch
import torch

torch.set_num_threads(1)
POLICY = GaussianPolicy(PolicyConfig(4, 2, hidden_sizes=(16, 16)))
PARAMS = POLICY.init_params(0)


def batch(learner, seed, tasks=3):
    pre = synthetic_episodes(POLICY, learner.current_params(), tasks, 4, 8, seed=seed)
    post = synthetic_episodes(POLICY, learner.adapt(pre), tasks, 4, 8, seed=seed + 1000)
    return pre, post


@pytest.mark.parametrize('algorithm,config', [
    ('promp', None), ('promp', {'estimator': 'dice'}), ('trpo', None), ('fomaml', None)])
def test_meta_step_moves_every_meta_parameter(algorithm, config):
    learner = make_learner(algorithm, POLICY, PARAMS, InnerConfig(lr=0.1, learn_lr=True), config)
    before = [v.detach().clone() for v in learner.meta_parameters()]
    pre, post = batch(learner, 0)
    stats = learner.meta_step(pre, post)
    assert all(isinstance(v, float) for v in stats.values())
    for (name, new), old in zip(learner.named_meta_parameters(), before):
        assert not torch.equal(new, old), f'{name} did not change'
    assert learner.iteration == 1
    assert torch.equal(PARAMS['log_std'], POLICY.init_params(0)['log_std'])  # input untouched


@pytest.mark.parametrize('fixed,per', [(('log_std',), 'entry'), ((), 'entry'),
                                       (('log_std',), 'tensor')])
def test_meta_sgd_keeps_the_fixed_step_sizes(fixed, per):
    inner = InnerConfig(lr=0.1, learn_lr=True, fixed_lr=fixed, lr_per=per)
    learner = make_learner('promp', POLICY, PARAMS, inner)
    names = [n for n, _ in learner.named_meta_parameters()]
    assert ('inner_lr.log_std' in names) == (not fixed)
    assert 'inner_lr.mean.weight' in names
    learner.meta_step(*batch(learner, 0))
    lr = learner.current_inner_lr()
    assert torch.equal(lr['log_std'], torch.full_like(lr['log_std'], 0.1)) == bool(fixed)
    assert not torch.equal(lr['mean.weight'], torch.full_like(lr['mean.weight'], 0.1))
    shape = PARAMS['mean.weight'].shape if per == 'entry' else ()
    assert lr['mean.weight'].shape == shape
    assert InnerConfig.from_dict(json.loads(json.dumps(inner.to_dict()))) == inner
    with pytest.raises(ValueError, match='fixed_lr'):
        InnerConfig(learn_lr=True, fixed_lr='log_std')


def test_promp_outer_trust_region_halves_or_undoes_steps_that_move_too_far():
    inner = InnerConfig(lr=0.1, learn_lr=True)
    free = make_learner('promp', POLICY, PARAMS, inner, {'outer_lr': 0.05})
    pre, post = batch(free, 4)
    stats = free.meta_step(pre, post)
    assert 'outer_steps_taken' not in stats      # guard off: the plain ProMP iteration
    for limit, halvings in ((0.05, 5), (1e-9, 0)):
        learner = make_learner('promp', POLICY, PARAMS, inner,
                               {'outer_lr': 0.05, 'max_post_clip_frac': limit,
                                'max_backtracks': halvings})
        before = [v.detach().clone() for v in learner.meta_parameters()]
        stats = learner.meta_step(pre, post)
        assert stats['outer_backtracks'] >= 1
        if halvings == 0:     # a full step leaves the budget: undone, parameters unchanged
            assert stats['outer_steps_taken'] == 0
            assert all(torch.equal(a, b) for a, b in zip(learner.meta_parameters(), before))
        else:                 # the steps kept leave the post-update policy within the budget
            assert stats['outer_steps_taken'] >= 1 and stats['clip_frac'] <= limit
            assert not all(torch.equal(a, b) for a, b in zip(learner.meta_parameters(), before))
    with pytest.raises(ValueError, match='max_post_clip_frac'):
        ProMPConfig(max_post_clip_frac=1.5)


def test_promp_outer_steps_increase_the_surrogate():
    learner = make_learner('promp', POLICY, PARAMS, InnerConfig(lr=0.1),
                           {'outer_lr': 3e-3, 'num_outer_steps': 4, 'adaptive_kl': True})
    pre, post = batch(learner, 1)
    stats = learner.meta_step(pre, post)
    assert stats['surrogate_last'] > stats['surrogate_first']
    assert stats['kl_pre'] > 0
    assert stats['kl_coeff'] != ProMPConfig().kl_coeff  # adaptive KL weight moved


def test_trpo_step_improves_within_trust_region():
    learner = make_learner('trpo', POLICY, PARAMS, InnerConfig(lr=0.1), {'max_kl': 0.005})
    pre, post = batch(learner, 2)
    stats = learner.meta_step(pre, post)
    assert stats['accepted'] == 1.0
    assert 0 < stats['kl_post'] <= 0.005
    assert stats['surrogate_after'] > stats['surrogate_before']


def test_adapt_has_no_graph_and_one_params_per_task():
    learner = make_learner('promp', POLICY, PARAMS, InnerConfig(lr=0.1))
    pre, _ = batch(learner, 3, tasks=5)
    adapted = learner.adapt(pre)
    assert adapted['mean.weight'].shape == (5, 2, 16)
    assert not any(v.requires_grad for v in adapted.values())
    two = learner.adapt([pre, pre])
    assert not torch.allclose(two['mean.bias'], adapted['mean.bias'])


def roundtrip_through_files(state, tmp_path):
    """Save as safetensors + JSON (what the trainer does) and read back."""
    (tmp_path / 's.safetensors').write_bytes(safetensors.torch.save(state['tensors']))
    (tmp_path / 's.json').write_text(json.dumps(state['extra']))
    return {'tensors': safetensors.torch.load((tmp_path / 's.safetensors').read_bytes()),
            'extra': json.loads((tmp_path / 's.json').read_text())}


@pytest.mark.parametrize('algorithm', ['promp', 'trpo', 'fomaml'])
def test_exact_resume_from_tensors_and_json(algorithm, tmp_path):
    inner = InnerConfig(lr=0.1, learn_lr=True)
    cfg = {'adaptive_kl': True} if algorithm == 'promp' else None
    a = make_learner(algorithm, POLICY, PARAMS, inner, cfg)
    for seed in range(2):
        a.meta_step(*batch(a, seed))
    b = make_learner(algorithm, POLICY, POLICY.init_params(9), inner, cfg)
    b.load_state_dict(roundtrip_through_files(a.state_dict(), tmp_path))
    assert b.iteration == 2
    pre, post = batch(a, 5)
    sa, sb = a.meta_step(pre, post), b.meta_step(pre, post)
    assert sa == sb
    for x, y in zip(a.meta_parameters(), b.meta_parameters()):
        assert torch.equal(x, y)


def test_state_mismatches_are_refused():
    a = make_learner('promp', POLICY, PARAMS, InnerConfig(lr=0.1))
    state = a.state_dict()
    with pytest.raises(ValueError, match='algorithm'):
        make_learner('trpo', POLICY, PARAMS, InnerConfig(lr=0.1)).load_state_dict(state)
    with pytest.raises(ValueError, match='inner settings'):
        make_learner('promp', POLICY, PARAMS, InnerConfig(lr=0.2)).load_state_dict(state)


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match='estimator'):
        config_from_dict('promp', {'estimator': 'reinforce'})
    with pytest.raises(ValueError, match='unknown trpo settings'):
        config_from_dict('trpo', {'clip_eps': 0.2})
    with pytest.raises(ValueError, match='algorithm'):
        config_from_dict('maml++')
    with pytest.raises(ValueError, match='first_order'):
        make_learner('fomaml', POLICY, PARAMS, InnerConfig(), ProMPConfig())
    assert config_from_dict('fomaml').first_order
