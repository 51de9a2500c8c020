"""ES-MAML: ES meta-gradient, fitness shaping, antithetic pairs, reacher training, resume, eval."""

import csv
import json

from maml_robot.checkpoint import load_checkpoint, save_checkpoint
from maml_robot.cli import main
from maml_robot.meta.es_maml import antithetic_members, es_gradient, ESMAMLConfig
from maml_robot.meta.operators import centered_ranks
from maml_robot.meta.trainer import Trainer
from maml_robot.train_config import load_train_config, TrainConfig
from maml_robot.train_state import load_train_state
import numpy as np
import pytest
import torch

TINY = {'algorithm': 'es_maml', 'tasks_per_iteration': 2, 'es_pairs': 2, 'rollouts_per_task': 2,
        'horizon': 8, 'workers': 1, 'device': 'cpu', 'hidden_sizes': (16,),
        'checkpoint_every': 1, 'learn_inner_lr': False, 'adaptation_budget': 4,
        'adapt_batch': 1, 'adapt_episodes': 2, 'es_lr': 0.05}
"""Two pairs on two reacher tasks; one hill_climb round of (1 + 1) x 2 episodes per member."""


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tiny(iterations, **extra):
    return load_train_config('reacher', overrides={**TINY, 'iterations': iterations, **extra})


# ------------------------------------------------------------------------------ estimator
def test_fitness_shaping_exact_values():
    assert np.array_equal(centered_ranks([3.0, 1.0, 2.0]), [0.5, -0.5, 0.0])
    assert np.array_equal(centered_ranks([1.0, 1.0, 2.0, 0.0]), [0.0, 0.0, 0.5, -0.5])
    assert np.array_equal(centered_ranks([-100.0, 5.0, 1e6, 4.0, 4.5]),
                          [-0.5, 0.25, 0.5, -0.25, 0.0])        # only the order counts


def test_antithetic_pairs_mirror_each_other():
    theta = {'mean.weight': torch.randn(2, 3), 'mean.bias': torch.randn(2),
             'log_std': torch.zeros(2)}
    names = ('mean.bias', 'mean.weight')
    eps, members = antithetic_members(theta, names, 3, 0.1, np.random.default_rng(0))
    assert len(eps) == 3 and len(members) == 6
    for i, e in enumerate(eps):
        plus, minus = members[2 * i], members[2 * i + 1]
        for n in names:
            assert torch.allclose(plus[n] - theta[n], 0.1 * e[n], atol=1e-6)
            assert torch.allclose(minus[n] - theta[n], -0.1 * e[n], atol=1e-6)
        assert plus['log_std'] is theta['log_std'] and minus['log_std'] is theta['log_std']
    assert not torch.equal(eps[0]['mean.bias'], eps[1]['mean.bias'])   # fresh draws
    # equal fitness within every pair: no direction is preferred
    flat = es_gradient(eps, [1.0, 1.0, 5.0, 5.0, -2.0, -2.0], 0.1)
    assert all(torch.all(g == 0) for g in flat.values())
    # swapping the members of every pair reverses the estimate
    f = np.array([3.0, 1.0, 0.0, 2.0, 7.0, 4.0])
    up, down = es_gradient(eps, f, 0.1), es_gradient(eps, f.reshape(3, 2)[:, ::-1].ravel(), 0.1)
    assert all(torch.allclose(up[n], -down[n]) for n in names)
    with pytest.raises(ValueError, match='one value per member'):
        es_gradient(eps, [1.0, 2.0], 0.1)


def _cosine(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize('shaping,threshold', [(False, 0.95), (True, 0.95)])
def test_es_meta_gradient_points_uphill_on_a_quadratic(shaping, threshold):
    """J(theta) = -|U(theta) - c|^2 with U a step towards the task's optimum (toy adaptation)."""
    rng = np.random.default_rng(3)
    dim, alpha = 20, 0.3
    task = torch.from_numpy(rng.standard_normal(dim))                  # the task's optimum
    target = torch.from_numpy(rng.standard_normal(dim))                # where J peaks

    def meta_objective(theta):
        adapted = theta + alpha * (task - theta)                       # U(theta, task)
        return -float(((adapted - target) ** 2).sum())

    theta = {'w': torch.from_numpy(rng.standard_normal(dim))}
    exact = theta['w'].clone().requires_grad_(True)
    value = -(((exact + alpha * (task - exact)) - target) ** 2).sum()
    true_grad = torch.autograd.grad(value, exact)[0]
    cosines = []
    for pairs in (2, 1000):
        eps, members = antithetic_members(theta, ('w',), pairs, 0.01, rng)
        fitness = [meta_objective(m['w']) for m in members]
        cosines.append(_cosine(es_gradient(eps, fitness, 0.01, shaping)['w'], true_grad))
    assert cosines[1] > threshold, cosines
    assert cosines[1] > cosines[0]     # more samples, closer to the true direction


# ---------------------------------------------------------------------------------- config
@pytest.mark.parametrize('extra,key', [
    ({'learn_inner_lr': True}, 'learn_inner_lr'),
    ({'tasks_per_iteration': 3}, 'tasks_per_iteration 3 > es_pairs 2'),
    ({'adaptation_budget': 3}, 'adaptation_budget 3 < 4'),
    ({'adaptation': 'pg'}, 'adaptation: expected one of'),
    ({'es_sigma': 0.0}, 'es_sigma: expected a number > 0'),
    ({'init_checkpoint': 'x.safetensors', 'normalize_obs': True}, 'normalize_obs'),
])
def test_bad_es_maml_settings_name_the_key(extra, key):
    with pytest.raises(ValueError, match=key):
        tiny(1, **extra)


def test_config_goes_to_the_learner_and_operator():
    cfg = tiny(1, adapt_sigma=0.03, adapt_z=1.0)
    outer = cfg.outer_config()
    assert isinstance(outer, ESMAMLConfig) and (outer.pairs, outer.outer_lr) == (2, 0.05)
    op = outer.make_operator()
    assert (op.name, op.sigma, op.batch, op.episodes, op.z, op.paired) == (
        'hill_climb', 0.03, 1, 2, 1.0, True)
    es = tiny(1, adaptation='es', adaptation_budget=8).outer_config().make_operator()
    assert (es.name, es.pairs, es.lr) == ('es', 1, 0.02)
    assert TrainConfig().algorithm == 'promp'       # the default is unchanged


# ------------------------------------------------------------------------ reacher training
@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Train an uninterrupted 2-iteration run, and a 1-iteration run resumed to 2."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('es_maml')
    Trainer(tiny(2), root / 'full', progress=False).run()
    Trainer(tiny(1), root / 'cut', progress=False).run()
    Trainer(tiny(2), root / 'cut', resume=True, progress=False).run()
    return root


def test_training_moves_and_logs(runs):
    root = runs
    with open(root / 'full' / 'progress.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[0]['grad_norm']) > 0
    # 2 pairs x 2 members, each: 4 adaptation + 2 measurement episodes of 8 steps
    assert int(rows[0]['env_steps']) == 4 * 6 * 8 and int(rows[1]['env_steps']) == 2 * 4 * 6 * 8
    assert np.isfinite(float(rows[1]['post_return'])) and 'pair_gap' in rows[0]
    start = Trainer(tiny(2), root / 'fresh', progress=False)
    start.close()
    end = load_checkpoint(root / 'full' / 'latest.safetensors')
    assert not torch.equal(end.params['mean.weight'], start.learner.params['mean.weight'])
    assert torch.equal(end.params['log_std'], start.learner.params['log_std'].detach())


def test_resume_is_bit_identical(runs):
    root = runs
    a = load_checkpoint(root / 'full' / 'latest.safetensors')
    b = load_checkpoint(root / 'cut' / 'latest.safetensors')
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name
    sa, _ = load_train_state(root / 'full' / 'resume.safetensors')
    sb, _ = load_train_state(root / 'cut' / 'resume.safetensors')
    ta, tb = sa['learner']['tensors'], sb['learner']['tensors']
    assert any(k.startswith('optim.') for k in ta) and sorted(ta) == sorted(tb)
    for name in ta:                                     # parameters and Adam's moments
        assert torch.equal(ta[name], tb[name]), name
    rows = [(root / d / 'progress.csv').read_text().splitlines() for d in ('full', 'cut')]
    assert [r.split(',')[:7] for r in rows[0]] == [r.split(',')[:7] for r in rows[1]]


def test_checkpoint_records_the_operator(runs, tmp_path):
    root = runs
    ckpt = load_checkpoint(root / 'full' / 'latest.safetensors')
    assert ckpt.algorithm['name'] == 'es_maml'
    assert ckpt.adaptation_operator() == 'hill_climb'
    assert ckpt.adaptation['budget'] == 4
    assert ckpt.adaptation['settings'] == {'sigma': 0.05, 'episodes': 2, 'max_delta': None,
                                           'space': 'all', 'batch': 1, 'z': 0.0, 'paired': True}
    from dataclasses import replace
    bad = replace(ckpt, adaptation={'operator': 'sgd'})
    save_checkpoint(tmp_path / 'bad.safetensors', bad)
    with pytest.raises(ValueError, match='adaptation .* is malformed'):
        load_checkpoint(tmp_path / 'bad.safetensors')
    old = replace(ckpt, adaptation={})                  # files written before the key
    save_checkpoint(tmp_path / 'old.safetensors', old)
    assert load_checkpoint(tmp_path / 'old.safetensors').adaptation_operator() == 'pg'


@pytest.mark.parametrize('given', [[], ['--adaptation', 'hill_climb']])
def test_checkpoint_evaluates_with_its_operator(runs, tmp_path, given, capsys):
    root = runs
    out = tmp_path / 'eval.json'
    code = main(['eval', '--checkpoint', str(root / 'full' / 'latest.safetensors'),
                 '--tasks', '2', '--rollouts', '2', '--budget', '8', '--workers', '1',
                 '--device', 'cpu', '--json', str(out), *given])
    assert code == 0
    report = json.loads(out.read_text())
    meta = report['meta']
    assert meta['adaptation'] == 'hill_climb'
    assert 'batch=1' in meta['adaptation_args'] and 'paired=True' in meta['adaptation_args']
    config = report['results'][0]['config']
    assert config['live_episodes'] == [0, 4, 8]     # two rounds of (1 + 1) x 2 episodes
