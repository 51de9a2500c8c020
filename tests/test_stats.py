"""Bootstrap CIs, normalized score and negative-adaptation rate on synthetic numbers."""

from maml_robot import stats
import numpy as np
import pytest


def _crossed(rng, n_seeds, n_tasks, mu=5.0, seed_sd=1.0, task_sd=2.0, noise_sd=0.5):
    """Return a seeds x tasks grid with seed effects, task effects and noise around ``mu``."""
    seed_eff = rng.normal(0.0, seed_sd, size=(n_seeds, 1))
    task_eff = rng.normal(0.0, task_sd, size=(1, n_tasks))
    return mu + seed_eff + task_eff + rng.normal(0.0, noise_sd, size=(n_seeds, n_tasks))


def test_bootstrap_ci_covers_true_mean_near_nominal_rate():
    rng = np.random.default_rng(0)
    trials, hits = 300, 0
    widths = []
    for _ in range(trials):
        values = _crossed(rng, n_seeds=10, n_tasks=40)
        ci = stats.bootstrap_ci(values, rng=rng, n_boot=500)
        hits += ci.low <= 5.0 <= ci.high
        widths.append(ci.high - ci.low)
    coverage = hits / trials
    # Nominal 0.95; the percentile two-way bootstrap is slightly liberal with 10 seeds and
    # slightly conservative from the doubled noise term: accept a band around it.
    assert 0.85 <= coverage <= 0.995, coverage
    assert np.mean(widths) > 0.5  # not a degenerate interval that happens to cover


def test_bootstrap_ci_tracks_task_variance_with_one_seed():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(200):
        values = rng.normal(3.0, 1.0, size=(1, 30))
        ci = stats.bootstrap_ci(values, rng=rng, n_boot=400)
        hits += ci.low <= 3.0 <= ci.high
    assert 0.85 <= hits / 200 <= 0.99


def test_bootstrap_ci_vectorizes_over_steps_and_is_reproducible():
    values = np.random.default_rng(2).normal(size=(5, 8, 4)) + np.arange(4)
    a = stats.bootstrap_ci(values, rng=np.random.default_rng(7), n_boot=300)
    b = stats.bootstrap_ci(values, rng=np.random.default_rng(7), n_boot=300)
    assert a.mean.shape == a.low.shape == a.high.shape == (4,)
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_allclose(a.mean, values.mean(axis=(0, 1)))
    assert np.all(a.low < a.mean) and np.all(a.mean < a.high)
    # Each column's interval equals the interval of that column alone (same draws).
    col = stats.bootstrap_ci(values[:, :, 2], rng=np.random.default_rng(7), n_boot=300)
    assert col.low == pytest.approx(a.low[2]) and col.high == pytest.approx(a.high[2])


def test_resampled_means_match_explicit_index_resampling():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 5))
    seed_idx = np.array([0, 0, 2])
    task_idx = np.array([1, 4, 4, 0, 3])
    seed_counts = np.bincount(seed_idx, minlength=3)[None].astype(float)
    task_counts = np.bincount(task_idx, minlength=5)[None].astype(float)
    got = stats.resampled_means(values, seed_counts, task_counts)
    assert got[0] == pytest.approx(values[seed_idx][:, task_idx].mean())


def test_bootstrap_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='seeds, tasks'):
        stats.bootstrap_ci(np.ones(4), rng=rng)
    with pytest.raises(ValueError, match='non-finite'):
        stats.bootstrap_ci(np.array([[1.0, np.nan]]), rng=rng)
    with pytest.raises(ValueError, match='confidence'):
        stats.bootstrap_ci(np.ones((2, 2)), rng=rng, confidence=1.5)


def test_normalized_score_formula_and_guard():
    assert stats.normalized_score(5.0, 1.0, 9.0) == pytest.approx(0.5)
    assert stats.normalized_score(9.0, 1.0, 9.0) == pytest.approx(1.0)
    assert stats.normalized_score(1.0, 1.0, 9.0) == pytest.approx(0.0)
    assert stats.normalized_score(-3.0, 1.0, 9.0) == pytest.approx(-0.5)
    # Negative returns (costs) work the same way.
    assert stats.normalized_score(-20.0, -40.0, -10.0) == pytest.approx(2 / 3)
    # Oracle == random: undefined, NaN (never inf and no warning), elementwise.
    with np.errstate(all='raise'):
        got = stats.normalized_score(np.array([2.0, 2.0]), np.array([1.0, 1.0]),
                                     np.array([1.0, 3.0]))
    assert np.isnan(got[0]) and got[1] == pytest.approx(0.5)


def test_bootstrap_normalized_is_a_ratio_of_means():
    rng = np.random.default_rng(4)
    rand = np.array([0.0, 10.0, -5.0])
    oracle = np.array([10.0, 30.0, 5.0])
    values = np.stack([rand + 0.5 * (oracle - rand)] * 4) + rng.normal(0, 0.1, (4, 3))
    ci = stats.bootstrap_normalized(values, rand, oracle, rng=rng, n_boot=500)
    expected = (values.mean() - rand.mean()) / (oracle.mean() - rand.mean())
    assert ci.mean == pytest.approx(expected)
    assert ci.low < ci.mean < ci.high and 0.4 < ci.low and ci.high < 0.6
    degenerate = stats.bootstrap_normalized(values, rand, rand, rng=rng, n_boot=50)
    assert np.isnan(degenerate.mean) and np.isnan(degenerate.low)
    with pytest.raises(ValueError, match='random_returns'):
        stats.bootstrap_normalized(values, rand[:2], oracle, rng=rng)


def test_negative_adaptation_rate_counts_only_drops_beyond_the_margin():
    before = np.array([[10.0, 10.0, 10.0, 10.0]])
    after = np.array([[12.0, 9.5, 7.0, 10.0]])
    worse = stats.negative_adaptation(before, after, margin=1.0)
    assert worse.tolist() == [[False, False, True, False]]
    assert stats.negative_adaptation(before, after, margin=0.0).sum() == 2
    rate = stats.negative_adaptation_rate(before, after, 1.0, rng=np.random.default_rng(0),
                                          n_boot=200)
    assert rate.mean == pytest.approx(0.25)
    assert 0.0 <= rate.low <= 0.25 <= rate.high <= 1.0
    with pytest.raises(ValueError, match='margin'):
        stats.negative_adaptation(before, after, margin=-1.0)


def test_noise_margin_is_z_standard_errors_of_the_difference():
    margin = stats.noise_margin(3.0, 4.0, 25, 25, z=2.0)
    assert margin == pytest.approx(2.0 * np.sqrt(9 / 25 + 16 / 25))
    # Pure noise (no true change) rarely counts as negative adaptation with z = 2.
    rng = np.random.default_rng(5)
    rollouts = rng.normal(0.0, 1.0, size=(2, 2000, 20))              # (before/after, tasks, R)
    means, stds = rollouts.mean(-1), rollouts.std(-1, ddof=1)
    margin = stats.noise_margin(stds[0], stds[1], 20, 20)
    rate = stats.negative_adaptation(means[0], means[1], margin).mean()
    assert rate < 0.05
