"""Summary, writers and plot of evaluation results; the eval loop end to end on a fresh policy."""

import json
import math

from maml_robot import evaluate
from maml_robot.plots import plot_curves
from maml_robot.results import (markdown_table, MethodResult, read_json, read_raw_csv, Report,
                                summary_csv_path, write_json, write_raw_csv, write_summary_csv)
import numpy as np
import pytest

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _result(method, curve, rng, n_runs=3, n_tasks=6, std=1.0, groups=None, rollouts=10):
    """Return a synthetic result whose mean return follows ``curve`` (one value per step)."""
    curve = np.asarray(curve, dtype=float)
    steps = len(curve)
    returns = curve + rng.normal(0.0, 0.05, size=(n_runs, n_tasks, steps))
    env = np.broadcast_to(np.arange(steps) * 200.0, (n_runs, n_tasks, steps))
    return MethodResult(
        method=method, label=method, scenario='reacher', split='test',
        task_ids=list(range(n_tasks)), runs=[f'r{i}' for i in range(n_runs)],
        groups=groups or [f'g{i}' for i in range(n_runs)], steps=list(range(steps)),
        env_steps=env, returns=returns, returns_std=np.full(returns.shape, std),
        rollouts=rollouts, wall_s=np.cumsum(np.ones((n_runs, steps)), axis=1),
        config={'rollouts_per_step': 10})


def _report(rng):
    results = [_result('maml', [-30.0, -15.0, -12.0, -11.0], rng),
               _result('ppo-dr', [-25.0, -24.0, -23.0, -22.0], rng),
               _result('random', [-40.0], rng), _result('oracle', [-10.0], rng)]
    summary = evaluate.summarize(results, evaluate.SummaryConfig(n_boot=200))
    return Report(results, summary, {'scenario': 'reacher', 'split': 'test'})


def test_summary_rows_scores_and_negative_rates():
    rng = np.random.default_rng(0)
    report = _report(rng)
    rows = {(r['method'], r['step']): r for r in report.summary}
    assert len(report.summary) == 4 + 4 + 1 + 1
    maml1 = rows[('maml', 1)]
    assert maml1['score_mean'] == pytest.approx((-15 + 40) / 30, abs=0.02)
    assert maml1['score_low'] < maml1['score_mean'] < maml1['score_high']
    assert rows[('oracle', 0)]['score_mean'] == pytest.approx(1.0, abs=0.01)
    assert rows[('random', 0)]['score_mean'] == pytest.approx(0.0, abs=0.01)
    assert rows[('maml', 3)]['neg_rate_mean'] == 0.0
    assert rows[('maml', 0)]['env_steps'] == 0.0 and rows[('maml', 2)]['env_steps'] == 400.0
    assert math.isnan(rows[('oracle', 0)]['neg_rate_mean'])
    assert rows[('maml', 1)]['n_seeds'] == 3 and rows[('maml', 1)]['n_tasks'] == 6


def test_negative_adaptation_detected_and_margin_respected():
    rng = np.random.default_rng(1)
    worse = _result('maml', [-10.0, -20.0], rng, std=1.0)             # drop of 10 >> margin
    noisy = _result('multitask', [-10.0, -10.5], rng, std=5.0)        # drop of 0.5 << margin
    rows = {(r['method'], r['step']): r
            for r in evaluate.summarize([worse, noisy], evaluate.SummaryConfig(n_boot=100))}
    assert rows[('maml', 1)]['neg_rate_mean'] == 1.0
    assert rows[('multitask', 1)]['neg_rate_mean'] == 0.0
    assert math.isnan(rows[('maml', 1)]['score_mean'])                # no references given


def test_seed_units_average_eval_seeds_of_one_training_seed():
    rng = np.random.default_rng(2)
    res = _result('maml', [0.0, 1.0], rng, n_runs=4, groups=['a', 'a', 'b', 'b'])
    units = evaluate.seed_units(res, res.returns)
    assert units.shape == (2, 6, 2)
    np.testing.assert_allclose(units[1], res.returns[2:].mean(0))


def test_result_shapes_are_checked():
    rng = np.random.default_rng(3)
    good = _result('maml', [0.0, 1.0], rng)
    with pytest.raises(ValueError, match='returns has shape'):
        MethodResult(**{**good.__dict__, 'returns': good.returns[:, :2]})
    with pytest.raises(ValueError, match='steps must start at 0'):
        MethodResult(**{**good.__dict__, 'steps': [1, 2]})


def test_check_compatible_rejects_mixed_splits():
    rng = np.random.default_rng(4)
    a = _result('maml', [0.0, 1.0], rng)
    b = _result('ppo-dr', [0.0, 1.0], rng)
    b.split = 'ood'
    with pytest.raises(ValueError, match='same scenario and split'):
        evaluate.check_compatible([a, b])
    fewer = _result('ppo-dr', [0.0, 1.0], rng, n_tasks=4)
    with pytest.raises(ValueError, match='same --split, --tasks'):
        evaluate.check_compatible([a, fewer])
    evaluate.check_compatible([a, _result('oracle', [2.0], rng, n_tasks=2)])  # subset is fine


def test_writers_round_trip(tmp_path):
    report = _report(np.random.default_rng(5))
    write_json(tmp_path / 'r.json', report)
    back = read_json(tmp_path / 'r.json')
    json.loads((tmp_path / 'r.json').read_text())                    # strict JSON (no NaN)
    assert [r.method for r in back.results] == [r.method for r in report.results]
    for a, b in zip(report.results, back.results):
        np.testing.assert_array_equal(a.returns, b.returns)
        np.testing.assert_array_equal(a.env_steps, b.env_steps)
    for a, b in zip(report.summary, back.summary):
        for key, value in a.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(b[key])
            else:
                assert b[key] == value
    write_raw_csv(tmp_path / 'r.csv', report.results)
    for a, b in zip(report.results, read_raw_csv(tmp_path / 'r.csv')):
        assert (a.method, a.task_ids, a.runs, a.groups) == (b.method, b.task_ids, b.runs, b.groups)
        np.testing.assert_array_equal(a.returns, b.returns)          # repr() keeps every bit
        np.testing.assert_array_equal(a.returns_std, b.returns_std)
    write_summary_csv(summary_csv_path(tmp_path / 'r.csv'), report.summary)
    lines = (tmp_path / 'r.summary.csv').read_text().splitlines()
    assert len(lines) == 1 + len(report.summary)
    table = markdown_table(report)
    assert '| maml |' in table and 'k=3' in table and 'Normalized score' in table


def test_single_result_json_round_trip(tmp_path):
    res = _result('random', [-40.0], np.random.default_rng(6))
    write_json(tmp_path / 'random.json', res)
    back = read_json(tmp_path / 'random.json')
    assert isinstance(back, MethodResult) and back.is_reference
    np.testing.assert_array_equal(back.returns, res.returns)


def test_plot_is_a_png(tmp_path):
    report = _report(np.random.default_rng(7))
    plot_curves(report, tmp_path / 'curves.png')
    data = (tmp_path / 'curves.png').read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    # Width and height from the IHDR chunk: a two-panel figure is wider than tall.
    width, height = int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')
    assert width > height > 200


# ---------------------------------------------------------------------------------------------
# End to end on the reacher with a freshly initialized checkpoint
# ---------------------------------------------------------------------------------------------

def _fresh_checkpoint(path, seed=0, lr=0.1):
    """Write an untrained checkpoint of the reacher (what `train` writes at iteration 0)."""
    import torch

    from maml_robot.checkpoint import Checkpoint, save_checkpoint
    from maml_robot.meta.inner import InnerConfig
    from maml_robot.observation import observation_layout
    from maml_robot.policy import GaussianPolicy, PolicyConfig
    from maml_robot.scenario import load_scenario

    scenario = load_scenario('reacher')
    config = PolicyConfig(scenario.obs_dim, scenario.act_dim, (16, 16))
    save_checkpoint(path, Checkpoint(
        policy_config=config, params=GaussianPolicy(config).init_params(seed),
        obs_mean=torch.zeros(config.obs_dim), obs_std=torch.ones(config.obs_dim),
        joint_names=tuple(scenario.joint_names),
        observation_layout=tuple(observation_layout(scenario)),
        action_scale=tuple(float(x) for x in scenario.effort_limits),
        control_period=float(scenario.control_period), inner=InnerConfig(lr=lr).to_dict(),
        scenario=scenario.to_dict(), training={'seed': seed}))
    return path


def test_eval_fresh_checkpoint_end_to_end(tmp_path):
    import torch

    from maml_robot.cli import main

    torch.set_num_threads(1)
    ckpts = [_fresh_checkpoint(tmp_path / f'seed{s}.safetensors', seed=s) for s in (0, 1)]
    out = {k: tmp_path / f'eval.{k}' for k in ('json', 'csv', 'md', 'png')}
    rc = main(['eval', '--checkpoint', *map(str, ckpts), '--tasks', '3', '--adapt-steps', '2',
               '--rollouts', '4', '--seeds', '0', '1', '--workers', '1', '--device', 'cpu',
               '--max-envs', '8',                               # waves of 2 tasks
               '--bootstrap', '200', '--json', str(out['json']), '--csv', str(out['csv']),
               '--md', str(out['md']), '--plot', str(out['png'])])
    assert rc == 0
    report = read_json(out['json'])
    (maml,) = report.results
    assert maml.method == 'maml' and maml.scenario == 'reacher' and maml.split == 'test'
    assert maml.returns.shape == (4, 3, 3)                            # 2 ckpts x 2 seeds
    assert maml.groups == ['seed0', 'seed0', 'seed1', 'seed1']
    assert np.all(np.isfinite(maml.returns)) and np.all(maml.returns_std > 0)
    horizon = 50                                                      # reacher episode_steps
    np.testing.assert_allclose(maml.env_steps[..., 1], 4 * horizon)
    np.testing.assert_allclose(maml.env_steps[..., 2], 8 * horizon)
    assert np.all(np.diff(maml.wall_s, axis=1) > 0)
    # Adaptation really changed the policy: returns after a step differ from step 0.
    assert not np.allclose(maml.returns[..., 1], maml.returns[..., 0])
    # Same checkpoint and seed -> same step-0 rollouts (paired seeds across methods).
    assert not np.allclose(maml.returns[0, :, 0], maml.returns[1, :, 0])
    rows = [r for r in report.summary if r['method'] == 'maml']
    assert [r['step'] for r in rows] == [0, 1, 2] and all(r['n_seeds'] == 2 for r in rows)
    assert all(r['return_low'] <= r['return_mean'] <= r['return_high'] for r in rows)
    assert read_raw_csv(out['csv'])[0].returns.shape == (4, 3, 3)
    assert out['png'].read_bytes()[:8] == PNG_MAGIC
    assert '| meta-policy (ours) |' in out['md'].read_text()


def test_eval_is_reproducible_and_rejects_a_wrong_scenario(tmp_path):
    import torch

    from maml_robot.baseline_store import EnvSource
    from maml_robot.evaluate import evaluate_checkpoints

    torch.set_num_threads(1)
    ckpt = _fresh_checkpoint(tmp_path / 'c.safetensors')
    source = EnvSource.from_scenario('reacher')
    tasks, _ = source.split_tasks('test', 2)
    kw = {'adapt_steps': 1, 'rollouts': 2, 'eval_seeds': [3], 'split': 'test'}
    with source.sampler(1, device='cpu') as sampler:
        a = evaluate_checkpoints([ckpt], source, tasks, [0, 1], sampler, **kw)
        b = evaluate_checkpoints([ckpt], source, tasks, [0, 1], sampler, **kw)
    np.testing.assert_array_equal(a.returns, b.returns)
    other = EnvSource('cheetah', source.make_env, source.horizon, 'x')
    with pytest.raises(ValueError, match='trained on scenario'):
        evaluate_checkpoints([ckpt], other, tasks, [0, 1], None, **kw)


def test_steps_per_batch_repeat_the_update_on_the_same_rollouts(tmp_path):
    import torch

    from maml_robot.baseline_store import EnvSource
    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.meta.inner import inner_step
    from maml_robot.policy import expand_params, stack_params

    torch.set_num_threads(1)
    ckpt = load_checkpoint(_fresh_checkpoint(tmp_path / 'c.safetensors', lr=0.5))
    policy, kwargs = ckpt.make_policy(), ckpt.inner_config().advantage_kwargs()
    source = EnvSource.from_scenario('reacher')
    tasks, _ = source.split_tasks('test', 1)
    with pytest.raises(ValueError, match='steps_per_batch must be an integer'):
        evaluate.AdaptConfig(1, 2, 0.5, kwargs, steps_per_batch=0)
    with source.sampler(1, device='cpu') as sampler:
        curves = {s: evaluate.adapt_tasks(policy, ckpt.params, tasks, sampler, evaluate.
                                          AdaptConfig(1, 3, 0.5, kwargs, steps_per_batch=s),
                                          keep_params=s == 2)
                  for s in (1, 2)}
        # by hand: the step-0 rollouts, two inner steps on them, the step-1 rollouts
        first = sampler.sample(policy, expand_params(ckpt.params, 1), tasks, 3,
                               seed=np.random.SeedSequence([0, 0]))
        params = dict(ckpt.params)
        for _ in range(2):
            params = {k: v.detach() for k, v in inner_step(
                policy, params, first.task(0), 0.5, first_order=True, **kwargs).items()}
        second = sampler.sample(policy, stack_params([params]), tasks, 3,
                                seed=np.random.SeedSequence([0, 1]))
    assert curves[1]['returns'][0, 0] == curves[2]['returns'][0, 0]    # same start
    assert curves[1]['returns'][0, 1] != curves[2]['returns'][0, 1]    # another update
    expected = float(evaluate.episode_returns(second).mean())
    assert curves[2]['returns'][0, 1] == pytest.approx(expected, rel=1e-9)
    assert 'params' not in curves[1]                  # only on request: the adapted policy
    assert set(curves[2]['params']) == set(params)
    for name, value in params.items():
        assert torch.equal(curves[2]['params'][name][0], value), name


def test_plot_falls_back_to_returns_when_the_oracle_loses_a_task(tmp_path):
    from maml_robot import plots

    report = _report(np.random.default_rng(8))
    assert plots._oracle_beats_random(report.results)
    oracle = next(r for r in report.results if r.method == 'oracle')
    oracle.returns[:, 0, 0] = -50.0                                   # worse than random there
    assert not plots._oracle_beats_random(report.results)
    plots.plot_curves(report, tmp_path / 'c.png')                     # still draws (returns)
    assert (tmp_path / 'c.png').read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="'auto', 'score' or 'return'"):
        plots.plot_curves(report, tmp_path / 'd.png', y='median')


def test_table_leaves_missing_steps_of_an_adaptive_method_blank():
    """A method adapted for fewer steps than the table shows gets blanks, not its k=0 value."""
    rng = np.random.default_rng(8)
    results = [_result('maml', [-30.0, -15.0], rng), _result('ppo-dr', [-25.0, -24.0, -23.0], rng),
               _result('random', [-40.0], rng)]
    report = Report(results, evaluate.summarize(results, evaluate.SummaryConfig(n_boot=50)),
                    {'scenario': 'reacher', 'split': 'test'})
    rows = {line.split('|')[1].strip(): [c.strip() for c in line.split('|')[2:-1]]
            for line in markdown_table(report).split('**Negative')[0].splitlines()
            if line.startswith('| ') and not line.startswith('| method')}
    assert rows['maml'][2] == '' and rows['maml'][1].startswith('-15')
    assert rows['random'][0] == rows['random'][2] != ''   # a reference fills every column


def test_shipped_model_names_work_as_checkpoints(tmp_path):
    """``--checkpoint cheetah`` means the shipped file, as in the adapter and showcase."""
    from maml_robot.cli import build_parser
    parser = build_parser()
    own = str(tmp_path / 'mine.safetensors')
    args = parser.parse_args(['eval', '--checkpoint', 'cheetah', own])
    shipped, path = args.checkpoint
    assert shipped.name == 'cheetah.safetensors' and shipped.parent.name == 'models'
    assert shipped.is_file() and str(path) == own
    args = parser.parse_args(['baseline', '--scenario', 'reacher', '--kind', 'multitask',
                              '--out', str(tmp_path), '--checkpoint', 'reacher'])
    assert args.checkpoint.name == 'reacher.safetensors' and args.checkpoint.is_file()


def test_an_empty_checkpoint_argument_says_what_to_pass(capsys):
    from maml_robot.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(['eval', '--checkpoint', ''])
    assert 'no checkpoint given' in capsys.readouterr().err
