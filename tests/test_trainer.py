"""Trainer: config/YAML validation, seeding, Ctrl-C save + exact resume, state files, logs."""

from dataclasses import fields

from maml_robot.checkpoint import load_checkpoint
from maml_robot.meta.trainer import iteration_seeds, Trainer
from maml_robot.paths import data_path
from maml_robot.sampler import SamplerError
from maml_robot.sampling.standin import make_pendulum_task_env
from maml_robot.settings import field_docs
from maml_robot.train_config import load_train_config, TrainConfig
from maml_robot.train_state import load_train_state, save_train_state
import pytest
import torch
import yaml

TINY = {'tasks_per_iteration': 2, 'rollouts_per_task': 2, 'horizon': 8, 'workers': 1,
        'device': 'cpu', 'outer_steps': 2, 'hidden_sizes': (16,), 'checkpoint_every': 1}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def tiny(iterations, **extra):
    return load_train_config('reacher', overrides={**TINY, 'iterations': iterations, **extra})


# ----------------------------------------------------------------------------------- config
@pytest.mark.parametrize('name', ['reacher', 'cheetah', 'cheetah_small', 'quadruped',
                                  'quadruped_small', 'reacher_fixed_lr', 'reacher_lr01',
                                  'reacher_2step', 'reacher_es_maml'])
def test_shipped_yaml_mirrors_the_dataclass(name):
    path = data_path('config', 'train', f'{name}.yaml')
    with open(path, encoding='utf-8') as f:
        raw = yaml.safe_load(f)
    assert list(raw) == [f.name for f in fields(TrainConfig)]  # every key, in field order
    cfg = load_train_config(None, str(path))
    assert cfg.scenario == name.split('_')[0]        # cheetah_small trains the cheetah
    assert cfg.to_dict() == TrainConfig.from_dict(raw).to_dict()
    if '_' not in name:                               # the scenario's default config
        assert load_train_config(name).to_dict() == cfg.to_dict()


def test_every_field_has_a_docstring():
    docs = field_docs(TrainConfig)   # the help of each flag of maml-robot train
    assert list(docs) == [f.name for f in fields(TrainConfig)]
    assert all(docs.values())
    assert docs['horizon'] == "Steps per rollout; null uses the scenario's ``episode_steps``."


@pytest.mark.parametrize('text,key', [
    ('foo: 1\n', "unknown key 'foo'"),
    ('inner_lr: -0.1\n', 'inner_lr: expected a number >= 0'),
    ('hidden_sizes: 64\n', 'hidden_sizes: expected a non-empty list'),
    ('algorithm: sgd\n', "algorithm: expected one of ('promp', 'trpo', 'fomaml', 'es_maml')"),
    ('workers: 2.5\n', 'workers: expected an integer >= 1'),
    ('normalize_obs: 1\n', 'normalize_obs: expected true or false'),
    ('- 1\n- 2\n', 'expected a mapping'),
])
def test_bad_yaml_names_file_and_key(tmp_path, text, key):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_train_config(config_path=path)
    assert key in str(info.value) and str(path) in str(info.value)


def test_flags_override_yaml_and_none_is_ignored(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('scenario: reacher\nworkers: 3\nseed: 5\n')
    cfg = load_train_config(None, path, {'workers': 1, 'seed': None})
    assert (cfg.workers, cfg.seed, cfg.scenario) == (1, 5, 'reacher')
    with pytest.raises(ValueError, match='command-line overrides: iterations'):
        load_train_config(None, path, {'iterations': -3})


def test_iteration_seeds_are_reproducible_and_distinct():
    a, b = iteration_seeds(0, 4), iteration_seeds(0, 4)
    assert all((a[k].generate_state(2) == b[k].generate_state(2)).all() for k in a)
    states = {tuple(s.generate_state(2)) for s in a.values()}
    states |= {tuple(s.generate_state(2)) for s in iteration_seeds(0, 5).values()}
    assert len(states) == 2 * len(a)


def test_train_state_roundtrip_without_pickle(tmp_path):
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.01)
    p.sum().backward()
    opt.step()
    state = {'opt': opt.state_dict(), 'n': torch.tensor(3.0, dtype=torch.float64)}
    save_train_state(tmp_path / 's.safetensors', state, {'iteration': 7})
    loaded, info = load_train_state(tmp_path / 's.safetensors')
    assert info == {'iteration': 7}
    assert loaded['opt']['param_groups'][0]['betas'] == (0.9, 0.999)
    moments = loaded['opt']['state'][0]['exp_avg']
    assert torch.equal(moments, opt.state_dict()['state'][0]['exp_avg'])
    assert loaded['n'].dtype == torch.float64
    (tmp_path / 'broken.safetensors').write_bytes(b'\x10\x00')
    with pytest.raises(ValueError, match='not a readable training state'):
        load_train_state(tmp_path / 'broken.safetensors')


# ------------------------------------------------------------------------------- training
def test_ctrl_c_saves_and_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    ref = Trainer(tiny(3), tmp_path / 'ref', progress=False)
    ref.run()
    # the normalizer saw every valid pre-update step (2 tasks x 2 rollouts x 8 steps x 3 its)
    assert float(ref.normalizer.count) == 2 * 2 * 8 * 3
    assert torch.allclose(ref.policy.obs_mean, ref.normalizer.stats()[0])

    run = Trainer(tiny(3), tmp_path / 'cut', progress=False)
    real_step = run.learner.meta_step

    def interrupt_third(pre, post):
        stats = real_step(pre, post)  # the parameters move ...
        if run.learner.iteration == 3:
            raise KeyboardInterrupt  # ... then Ctrl-C before the iteration completes
        return stats

    monkeypatch.setattr(run.learner, 'meta_step', interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    state, info = load_train_state(tmp_path / 'cut' / 'resume.safetensors')
    assert info['iteration'] == 2  # the interrupted iteration is not half-saved
    saved = load_checkpoint(tmp_path / 'cut' / 'latest.safetensors')
    assert saved.training['iterations'] == 2
    for name, value in saved.params.items():
        assert torch.equal(value, state['learner']['tensors'][f'params.{name}'])
    assert not torch.equal(saved.params['mean.weight'], run.learner.params['mean.weight'])
    resumed = Trainer(tiny(3), tmp_path / 'cut', resume=True, progress=False)
    assert resumed.iteration == 2
    resumed.run()
    a = load_checkpoint(tmp_path / 'ref' / 'latest.safetensors')
    b = load_checkpoint(tmp_path / 'cut' / 'latest.safetensors')
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name
    assert torch.equal(a.obs_mean, b.obs_mean) and torch.equal(a.obs_std, b.obs_std)
    rows = [(tmp_path / d / 'progress.csv').read_text().splitlines() for d in ('ref', 'cut')]
    assert len(rows[0]) == len(rows[1]) == 4
    for ra, rb in zip(rows[0][1:], rows[1][1:]):  # same returns, iteration by iteration
        assert ra.split(',')[:4] == rb.split(',')[:4]


def test_run_folder_rules(tmp_path):
    Trainer(tiny(1), tmp_path / 'run', progress=False).run()
    with pytest.raises(ValueError, match='already holds a training run'):
        Trainer(tiny(1), tmp_path / 'run', progress=False)
    with pytest.raises(ValueError, match=r"settings \['inner_lr'\] differ"):
        Trainer(tiny(2, inner_lr=0.5), tmp_path / 'run', resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match='nothing to resume'):
        Trainer(tiny(1), tmp_path / 'empty', resume=True, progress=False)
    ckpt = load_checkpoint(tmp_path / 'run' / 'best.safetensors', expect={'scenario': 'reacher'})
    assert ckpt.training['iterations'] == 1 and ckpt.algorithm['name'] == 'promp'
    assert ckpt.inner['lr'] == tiny(1).inner_lr == 0.3 and ckpt.policy_config.hidden_sizes == (16,)


def test_sampling_failure_saves_state_custom_env(tmp_path, monkeypatch):
    """A SamplerError stops training with the last completed iteration saved (custom env)."""
    cfg = tiny(3, horizon=6)
    run = Trainer(cfg, tmp_path / 'run', env_factory=make_pendulum_task_env, progress=False)
    real_sample = run.sampler.sample
    calls = []

    def failing_sample(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the pre-update batch of iteration 1
            raise SamplerError('worker 0 failed with task(s) [...]: injected')
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(run.sampler, 'sample', failing_sample)
    with pytest.raises(SamplerError):
        run.run()
    _, info = load_train_state(tmp_path / 'run' / 'resume.safetensors')
    assert info['iteration'] == 1
    ckpt = load_checkpoint(tmp_path / 'run' / 'latest.safetensors')
    assert ckpt.joint_names == ('action_0',) and ckpt.action_scale == (2.0,)
    assert ckpt.policy_config.obs_dim == 3 and ckpt.scenario_name == 'custom'
