"""Adaptation-curve figure: every method on one PNG, against adaptation steps and env steps."""

import math
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # files only; never open a window (also works without a display)
import matplotlib.pyplot as plt  # noqa: E402 - must follow the backend choice

PALETTE = {
    'maml': '#1f77b4', 'multitask': '#2ca02c', 'ppo-dr': '#ff7f0e', 'oracle': '#7f7f7f',
    'random': '#d62728',
}
"""Fixed colours per method so every figure of the project reads the same."""


def _series(summary, label, key):
    rows = sorted((r for r in summary if r['label'] == label), key=lambda r: int(r['step']))
    steps = [int(r['step']) for r in rows]
    env = [float(r['env_steps']) for r in rows]
    mean = [float(r[f'{key}_mean']) for r in rows]
    low = [float(r[f'{key}_low']) for r in rows]
    high = [float(r[f'{key}_high']) for r in rows]
    return rows[0]['method'], steps, env, mean, low, high


def _has_scores(summary):
    return any(math.isfinite(float(r.get('score_mean', math.nan))) for r in summary
               if r['method'] not in ('oracle', 'random'))


def _oracle_beats_random(results):
    """Tell whether the oracle is above random on every task both were evaluated on."""
    refs = {r.method: dict(zip(r.task_ids, r.returns[:, :, 0].mean(0))) for r in results
            if r.method in ('oracle', 'random')}
    if len(refs) < 2:
        return False
    shared = set(refs['oracle']) & set(refs['random'])
    return bool(shared) and all(refs['oracle'][t] > refs['random'][t] for t in shared)


def _y_key(report, y):
    """Return 'score' or 'return': ``y``, or for 'auto' the score when it is meaningful."""
    if y not in ('auto', 'score', 'return'):
        raise ValueError(f"y must be 'auto', 'score' or 'return'; got {y!r}")
    if y == 'auto':
        return 'score' if _has_scores(report.summary) and _oracle_beats_random(report.results) \
            else 'return'
    return y


def _colour(method, used):
    """Return the method's palette colour, or another free one when it is taken (and mark it)."""
    colour = PALETTE.get(method)
    if colour is None or colour in used:  # a second result of one method: another colour
        colour = next(f'C{j}' for j in (5, 6, 8, 9, 4, 3, 2, 1, 0) if f'C{j}' not in used)
    used.add(colour)
    return colour


def _draw(axes, label, colour, series, max_step, max_env):
    """Draw one label's mean line and CI band on both panels (a reference: flat lines)."""
    steps, env, mean, low, high = series
    style = '--' if len(steps) == 1 else '-'
    for ax, xs, right in ((axes[0], steps, max_step), (axes[1], env, max_env)):
        if len(steps) == 1:  # a reference: a flat line across the panel
            xs, mean_, low_, high_ = [0, right], mean * 2, low * 2, high * 2
        else:
            mean_, low_, high_ = mean, low, high
        ax.plot(xs, mean_, style, color=colour, marker=None if len(steps) == 1 else 'o',
                markersize=3.5, label=label)
        if all(math.isfinite(v) for v in low_ + high_):
            ax.fill_between(xs, low_, high_, color=colour, alpha=0.18, linewidth=0)


def plot_curves(report, path, *, title=None, y='auto'):
    """
    Write the adaptation curves of ``report`` to a PNG at ``path``.

    Left panel: x = adaptation steps; right panel: x = env steps spent on adaptation. Bands are
    the 95% bootstrap CIs. Methods that do not adapt (oracle, random) are horizontal lines with
    their band across both panels.

    :param y: ``'score'`` (normalized score), ``'return'`` (mean return) or ``'auto'``: the score
        when random and oracle results are present and the oracle beats random on every shared
        task (otherwise the score's denominator can vanish in bootstrap draws and the bands say
        nothing), else the return.
    """
    summary = report.summary
    if not summary:
        raise ValueError('cannot plot an empty report: it has no summary rows')
    key = _y_key(report, y)
    ylabel = 'normalized score' if key == 'score' else 'mean return'
    labels = list(dict.fromkeys(r['label'] for r in summary))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), sharey=True, layout='constrained')
    max_step = max(int(r['step']) for r in summary)
    max_env = max(float(r['env_steps']) for r in summary) or 1.0
    used = set()
    for label in labels:
        method, steps, env, mean, low, high = _series(summary, label, key)
        if not all(math.isfinite(v) for v in mean):
            continue
        _draw(axes, label, _colour(method, used), (steps, env, mean, low, high), max_step,
              max_env)
    axes[0].set_xlabel('adaptation steps')
    axes[1].set_xlabel('env steps spent adapting (per task)')
    axes[0].set_ylabel(ylabel)
    if max_step >= 1:
        axes[0].set_xticks(range(0, max_step + 1, max(1, max_step // 10)))
    for ax in axes:
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc='outside lower center', ncol=min(len(names), 3),
               fontsize=8, frameon=False)
    meta = report.meta
    fig.suptitle(title or f"{meta.get('scenario', '?')} / {meta.get('split', '?')} split: "
                 f'adaptation curves (95% bootstrap CI)')
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, format='png')
    plt.close(fig)
