"""Baselines on tiny budgets: DR wrapper, SB3 conversion, random policy, cache, every kind."""

from maml_robot import baselines, sb3_bridge
from maml_robot.policy import PolicyConfig
from maml_robot.sampling.standin import make_pendulum_task_env
import numpy as np
import pytest
import torch

HORIZON = 40


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def source():
    """Return the stand-in env of the sampler's tests (Pendulum, gravity/mass tasks)."""
    return baselines.EnvSource('pendulum', make_pendulum_task_env, HORIZON, 'test')


def _config(kind, **kw):
    ppo = sb3_bridge.PPOConfig(n_envs=2, n_steps=64, batch_size=64, n_epochs=1)
    defaults = {'tasks': 3, 'adapt_steps': 2, 'rollouts': 3, 'train_steps': 256,
                'oracle_tasks': 2, 'ppo': ppo}
    return baselines.BaselineConfig(kind, **{**defaults, **kw})


def test_domain_randomization_changes_task_at_every_reset():
    env = sb3_bridge.TaskRandomizationWrapper(make_pendulum_task_env(), 'train', seed=3)
    seen = []
    for i in range(6):
        env.reset(seed=11 if i == 0 else None)
        assert env.unwrapped.get_task() == env.task                  # really applied
        seen.append(tuple(sorted(env.task.items())))
        env.step(env.action_space.sample())
    assert len(set(seen)) == 6
    again = sb3_bridge.TaskRandomizationWrapper(make_pendulum_task_env(), 'train', seed=99)
    again.reset(seed=11)
    assert tuple(sorted(again.task.items())) == seen[0]               # reproducible from seed


def test_env_maker_fixes_the_task_and_truncates():
    task = {'g': 6.5, 'm': 1.7}
    env = sb3_bridge.EnvMaker(make_pendulum_task_env, 5, task=task)()
    env.reset(seed=0)
    assert env.unwrapped.get_task() == task
    truncated = [env.step(env.action_space.sample())[3] for _ in range(5)]
    assert truncated == [False] * 4 + [True]


def test_sb3_actor_converts_to_our_policy():
    from stable_baselines3 import PPO

    config = PolicyConfig(3, 1, (8, 8), init_log_std=-0.5)
    model = PPO('MlpPolicy', make_pendulum_task_env(), seed=0, n_steps=64, batch_size=32,
                policy_kwargs=sb3_bridge.policy_kwargs(config), device='cpu')
    with torch.no_grad():                                             # make weights non-trivial
        for p in model.policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    policy, params = sb3_bridge.sb3_to_params(model, config)
    obs = torch.randn(16, 3) * 3
    with torch.no_grad():
        dist = model.policy.get_distribution(obs).distribution
        ours = policy.dist(params, obs)
    torch.testing.assert_close(ours.mean, dist.mean)
    torch.testing.assert_close(ours.stddev, dist.stddev)
    with pytest.raises(ValueError, match='does not match'):
        sb3_bridge.sb3_to_params(model, PolicyConfig(3, 1, (16, 16)))


def test_uniform_policy_samples_the_action_box():
    policy = sb3_bridge.UniformPolicy(3, [-2.0, 0.0], [2.0, 1.0])
    params_b = {k: v.expand(4, -1) for k, v in policy.params.items()}
    actions, logp = policy.batched_sample(params_b, torch.zeros(4, 500, 3),
                                          generator=torch.Generator().manual_seed(0))
    assert actions.shape == (4, 500, 2) and logp.shape == (4, 500)
    assert actions[..., 0].min() >= -2 and actions[..., 0].max() <= 2
    assert actions[..., 1].min() >= 0 and actions[..., 1].max() <= 1
    assert abs(float(actions[..., 0].mean())) < 0.1                   # centred, spread out
    assert float(actions[..., 0].std()) > 1.0
    torch.testing.assert_close(logp, torch.full((4, 500), -float(np.log(4.0))))
    single, logp1 = policy.sample(policy.params, torch.zeros(500, 3))   # shared-params path
    assert single.shape == (500, 2) and logp1.shape == (500,)
    assert single[:, 1].min() >= 0 and single[:, 1].max() <= 1


def test_cache_hit_skips_training(tmp_path, source, monkeypatch):
    config = PolicyConfig(3, 1, (8, 8))
    cfg = _config('ppo-dr', adapt_steps=1)
    first = baselines.BaselineCache(tmp_path, source, config)
    baselines.run_baseline(cfg, source, first)
    model = first.folder('ppo-dr', cfg.train_steps, 0) / 'model.zip'
    assert first.trained == [model] and model.exists()
    assert (model.parent / 'model.zip.json').exists()
    stamp = model.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError('a cached model was retrained')
    monkeypatch.setattr(sb3_bridge, 'train_ppo', no_training)
    second = baselines.BaselineCache(tmp_path, source, config)
    again = baselines.run_baseline(cfg, source, second)
    assert second.trained == [] and model.stat().st_mtime_ns == stamp
    assert np.all(np.isfinite(again.returns))
    monkeypatch.undo()
    forced = baselines.BaselineCache(tmp_path, source, config, retrain=True)
    baselines.run_baseline(cfg, source, forced)
    assert forced.trained == [model] and model.stat().st_mtime_ns != stamp
    # A different budget, seed or scenario fingerprint is another cache entry.
    assert first.folder('ppo-dr', 999, 0) != first.folder('ppo-dr', cfg.train_steps, 0)
    assert first.folder('ppo-dr', cfg.train_steps, 1) != first.folder('ppo-dr', cfg.train_steps, 0)


@pytest.mark.parametrize('kind', baselines.KINDS)
def test_every_kind_gives_finite_results_of_the_right_shape(tmp_path, source, kind):
    cfg = _config(kind, eval_seeds=(0, 1))
    cache = baselines.BaselineCache(tmp_path, source, PolicyConfig(3, 1, (8, 8)))
    result = baselines.run_baseline(cfg, source, cache)
    n_tasks = 2 if kind == 'oracle' else 3
    n_steps = 1 if kind in ('oracle', 'random') else 3
    assert result.method == kind and result.split == 'test'
    assert result.returns.shape == (2, n_tasks, n_steps)
    assert np.all(np.isfinite(result.returns)) and np.all(result.returns_std >= 0)
    assert result.task_ids == list(range(n_tasks))
    if n_steps > 1:
        # R episodes of HORIZON steps are spent per adaptation step.
        np.testing.assert_allclose(result.env_steps[..., 1], 3 * HORIZON)
        np.testing.assert_allclose(result.env_steps[..., 2], 6 * HORIZON)


def test_ppo_dr_and_multitask_start_from_the_same_zero_shot_policy(tmp_path, source):
    cache = baselines.BaselineCache(tmp_path, source, PolicyConfig(3, 1, (8, 8)))
    dr = baselines.run_baseline(_config('ppo-dr', adapt_steps=1), source, cache)
    mt = baselines.run_baseline(_config('multitask', adapt_steps=1), source, cache)
    assert cache.trained[-1].name == 'params.safetensors'             # converted, not retrained
    np.testing.assert_allclose(dr.returns[:, :, 0], mt.returns[:, :, 0])   # same seeds/params
    assert not np.allclose(mt.returns[:, :, 1], mt.returns[:, :, 0])   # inner_step changed it


def test_bad_baseline_config_is_rejected():
    with pytest.raises(ValueError, match='unknown baseline kind'):
        baselines.BaselineConfig('ppo')
    with pytest.raises(ValueError, match='rollouts'):
        baselines.BaselineConfig('random', rollouts=0)


def test_split_tasks_keeps_split_indices_under_a_filter():
    source = baselines.EnvSource.from_scenario('reacher')
    tasks, ids = source.split_tasks('ood', task_filter='dead-joint')
    assert tasks and all(t.dead_joints for t in tasks)
    everything, all_ids = source.split_tasks('ood')
    assert all_ids == list(range(len(everything))) and len(ids) < len(all_ids)
    assert [everything[i] for i in ids] == tasks
    assert source.split_tasks('ood', 2, 'dead-joint') == (tasks[:2], ids[:2])
    with pytest.raises(ValueError, match='unknown task filter'):
        source.split_tasks('ood', task_filter='broken')


def test_baseline_command_feeds_eval(tmp_path, capsys):
    from maml_robot.cli import main
    from maml_robot.results import read_json
    from test_evaluate import _fresh_checkpoint

    common = ['--tasks', '2', '--rollouts', '2', '--adapt-steps', '1', '--workers', '1',
              '--device', 'cpu']
    out = tmp_path / 'baselines'
    rc = main(['baseline', '--scenario', 'reacher', '--kind', 'random', '--out', str(out),
               '--cache', str(tmp_path / 'cache'), *common])
    assert rc == 0 and (out / 'random.json').exists()
    rc = main(['baseline', '--scenario', 'reacher', '--kind', 'multitask', '--out', str(out),
               '--cache', str(tmp_path / 'cache'), *common])
    assert rc == 2 and '--checkpoint' in capsys.readouterr().err     # says what to pass
    ckpt = _fresh_checkpoint(tmp_path / 'c.safetensors')
    rc = main(['eval', '--checkpoint', str(ckpt), '--baselines', str(out), '--bootstrap', '100',
               '--json', str(tmp_path / 'all.json'), *common])
    assert rc == 0
    report = read_json(tmp_path / 'all.json')
    assert [r.method for r in report.results] == ['maml', 'random']
    assert report.results[1].returns.shape == (1, 2, 1)
    # An adapting baseline evaluated with another budget cannot share the table.
    rc = main(['baseline', '--scenario', 'reacher', '--kind', 'ppo-dr', '--out', str(out),
               '--cache', str(tmp_path / 'cache'), '--train-steps', '128', '--n-envs', '2',
               *common])
    assert rc == 0 and (out / 'ppo-dr.json').exists()
    rc = main(['eval', '--checkpoint', str(ckpt), '--baselines', str(out), '--rollouts', '3',
               '--tasks', '2', '--adapt-steps', '1', '--workers', '1', '--device', 'cpu'])
    assert rc == 2 and 'same --rollouts' in capsys.readouterr().err


def test_learned_step_sizes_only_block_the_multitask_fine_tune():
    """Learned step sizes: PPO-DR gets the network; the multitask fine-tune needs --inner-lr."""
    import argparse

    from maml_robot.commands.baseline import _network_and_inner
    from maml_robot.online.loading import resolve_checkpoint
    shipped = resolve_checkpoint('reacher')           # learned per-layer step sizes
    source = baselines.EnvSource.from_scenario('reacher')

    def args(kind, inner_lr=None):
        return argparse.Namespace(kind=kind, checkpoint=shipped, inner_lr=inner_lr)
    config, lr, _ = _network_and_inner(args('ppo-dr'), source)
    assert config.hidden_sizes == (64, 64) and isinstance(lr, float)
    with pytest.raises(ValueError, match='pass --inner-lr'):
        _network_and_inner(args('multitask'), source)
    assert _network_and_inner(args('multitask', 0.05), source)[1] == 0.05
