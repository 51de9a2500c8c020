"""Result records of an evaluation and their writers: JSON, CSV and a markdown table."""

import csv
from dataclasses import dataclass, field
import json
import math
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
"""Bumped when the JSON layout changes incompatibly."""

RAW_COLUMNS = ('method', 'label', 'scenario', 'split', 'run', 'group', 'task_id', 'step',
               'env_steps', 'return', 'return_std', 'rollouts')
"""Columns of the raw CSV: one row per (method, run, task, adaptation step)."""


@dataclass
class MethodResult:
    """
    Returns of one method on the tasks of one split, before and after adaptation.

    ``S`` runs (seeds), ``M`` tasks, ``K + 1`` adaptation steps (``steps[0] == 0``). A reference
    method that does not adapt (oracle, random) has a single step.

    :param method: machine name: ``maml``, ``ppo-dr``, ``multitask``, ``oracle``, ``random``.
    :param label: legend text.
    :param scenario: scenario name.
    :param split: ``test`` or ``ood``.
    :param task_ids: index of each task in the split's fixed task list, length ``M``.
    :param runs: a name per run (e.g. ``ckpt0/seed1``), length ``S``.
    :param groups: the training seed each run belongs to (the bootstrap unit), length ``S``.
    :param steps: adaptation step numbers ``(K + 1,)``.
    :param env_steps: env steps spent on adaptation before the parameters evaluated at each
        step ``(S, M, K + 1)``.
    :param returns: mean undiscounted return of the evaluation rollouts ``(S, M, K + 1)``.
    :param returns_std: standard deviation over those rollouts ``(S, M, K + 1)``.
    :param rollouts: number of evaluation rollouts behind each mean.
    :param wall_s: cumulative wall-clock seconds per run up to each step ``(S, K + 1)``.
    :param config: JSON-able settings (budgets, learning rates, checkpoint paths, ...).
    """

    method: str
    label: str
    scenario: str
    split: str
    task_ids: list
    runs: list
    groups: list
    steps: np.ndarray
    env_steps: np.ndarray
    returns: np.ndarray
    returns_std: np.ndarray
    rollouts: int
    wall_s: np.ndarray
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        """Coerce the arrays and check that every shape agrees."""
        self.task_ids = [int(t) for t in self.task_ids]
        self.runs = [str(r) for r in self.runs]
        self.groups = [str(g) for g in self.groups]
        self.steps = np.asarray(self.steps, dtype=np.int64)
        shape = (len(self.runs), len(self.task_ids), len(self.steps))
        for name in ('env_steps', 'returns', 'returns_std'):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f'{self.method}: {name} has shape {value.shape}; expected '
                                 f'(runs, tasks, steps) = {shape}')
            setattr(self, name, value)
        self.wall_s = np.asarray(self.wall_s, dtype=np.float64)
        if self.wall_s.shape != shape[::2]:
            raise ValueError(f'{self.method}: wall_s has shape {self.wall_s.shape}; expected '
                             f'(runs, steps) = {shape[::2]}')
        if len(self.groups) != len(self.runs):
            raise ValueError(f'{self.method}: {len(self.groups)} groups for {len(self.runs)} runs')
        if len(self.steps) == 0 or self.steps[0] != 0 or np.any(np.diff(self.steps) <= 0):
            raise ValueError(f'{self.method}: steps must start at 0 and increase; '
                             f'got {self.steps.tolist()}')
        if int(self.rollouts) < 1:
            raise ValueError(f'{self.method}: rollouts must be >= 1; got {self.rollouts}')
        self.rollouts = int(self.rollouts)

    @property
    def is_reference(self):
        """Tell whether this method does not adapt (a single step: oracle, random)."""
        return len(self.steps) == 1

    def to_dict(self):
        """Return a JSON-able dict with every number."""
        return {
            'method': self.method, 'label': self.label, 'scenario': self.scenario,
            'split': self.split, 'task_ids': self.task_ids, 'runs': self.runs,
            'groups': self.groups, 'steps': self.steps.tolist(),
            'env_steps': self.env_steps.tolist(), 'returns': self.returns.tolist(),
            'returns_std': self.returns_std.tolist(), 'rollouts': self.rollouts,
            'wall_s': self.wall_s.tolist(), 'config': self.config,
        }

    @classmethod
    def from_dict(cls, data):
        """Rebuild a result written by :meth:`to_dict`."""
        missing = [k for k in ('method', 'returns', 'steps', 'task_ids', 'runs') if k not in data]
        if missing:
            raise ValueError(f'result record lacks keys {missing}; is this a maml_robot result?')
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def task_means(self, step=0):
        """Return the per-task return at ``step`` averaged over runs, shape ``(M,)``."""
        index = int(np.searchsorted(self.steps, step))
        if index >= len(self.steps) or self.steps[index] != step:
            raise ValueError(f'{self.method} has no adaptation step {step}; '
                             f'it has {self.steps.tolist()}')
        return self.returns[:, :, index].mean(axis=0)


@dataclass
class Report:
    """All methods of one evaluation, their summary rows and the settings that produced them."""

    results: list
    summary: list
    meta: dict

    def to_dict(self):
        """Return a JSON-able dict."""
        return {'format_version': FORMAT_VERSION, 'meta': self.meta,
                'results': [r.to_dict() for r in self.results], 'summary': self.summary}

    @classmethod
    def from_dict(cls, data):
        """Rebuild a report written by :meth:`to_dict`."""
        version = data.get('format_version')
        if version != FORMAT_VERSION:
            raise ValueError(f'report format_version {version!r}; this maml_robot reads '
                             f'{FORMAT_VERSION}')
        return cls([MethodResult.from_dict(r) for r in data['results']],
                   list(data['summary']), dict(data['meta']))


def _jsonable(value):
    """Replace NaN/inf by None so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _nan_from_json(value):
    if value is None:
        return float('nan')
    return value


def write_json(path, payload):
    """Write a report (or a single result) as strict JSON (NaN becomes null)."""
    data = payload.to_dict()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_jsonable(data), indent=1, allow_nan=False) + '\n')


def read_json(path):
    """Read a :class:`Report` or a :class:`MethodResult` written by :func:`write_json`."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f'{path} is not valid JSON ({err}); was it written completely?') from err
    if 'format_version' in data:
        report = Report.from_dict(data)
        report.summary = [{k: _nan_from_json(v) for k, v in row.items()}
                          for row in report.summary]
        return report
    return MethodResult.from_dict(data)


def write_raw_csv(path, results):
    """Write every (method, run, task, step) number as one CSV row; see ``RAW_COLUMNS``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(RAW_COLUMNS)
        for r in results:
            for i, (run, group) in enumerate(zip(r.runs, r.groups)):
                for j, task in enumerate(r.task_ids):
                    for k, step in enumerate(r.steps):
                        writer.writerow([
                            r.method, r.label, r.scenario, r.split, run, group, task, int(step),
                            repr(float(r.env_steps[i, j, k])), repr(float(r.returns[i, j, k])),
                            repr(float(r.returns_std[i, j, k])), r.rollouts])


def read_raw_csv(path):
    """Rebuild the results (without wall times and config) from a raw CSV."""
    with open(path, newline='') as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(RAW_COLUMNS) - set(rows[0]):
        raise ValueError(f'{path} lacks columns {sorted(set(RAW_COLUMNS) - set(rows[0]))}')
    by_method = {}
    for row in rows:
        by_method.setdefault(row['method'], []).append(row)
    results = []
    for method, mrows in by_method.items():
        runs = list(dict.fromkeys(r['run'] for r in mrows))
        tasks = list(dict.fromkeys(int(r['task_id']) for r in mrows))
        steps = sorted({int(r['step']) for r in mrows})
        shape = (len(runs), len(tasks), len(steps))
        arrays = {name: np.full(shape, np.nan) for name in ('env_steps', 'return', 'return_std')}
        groups = {}
        for r in mrows:
            idx = (runs.index(r['run']), tasks.index(int(r['task_id'])),
                   steps.index(int(r['step'])))
            groups[r['run']] = r['group']
            for name, array in arrays.items():
                array[idx] = float(r[name])
        results.append(MethodResult(
            method=method, label=mrows[0]['label'], scenario=mrows[0]['scenario'],
            split=mrows[0]['split'], task_ids=tasks, runs=runs, groups=[groups[x] for x in runs],
            steps=steps, env_steps=arrays['env_steps'], returns=arrays['return'],
            returns_std=arrays['return_std'], rollouts=int(mrows[0]['rollouts']),
            wall_s=np.full((len(runs), len(steps)), np.nan)))
    return results


def write_summary_csv(path, summary):
    """Write the summary rows (one per method and step) as CSV."""
    if not summary:
        raise ValueError('nothing to write: the summary is empty')
    columns = list(summary[0])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in summary:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})


def summary_csv_path(path):
    """Return the summary CSV's path beside the raw CSV ``path``: ``x.csv -> x.summary.csv``."""
    path = Path(path)
    return path.with_name(path.stem + '.summary' + (path.suffix or '.csv'))


def _fmt(mean, low, high, digits):
    if mean is None or not math.isfinite(mean):
        return 'n/a'
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]'


def markdown_table(report, max_columns=6):
    """Return markdown tables of the summary: returns, normalized scores, negative adaptation."""
    rows = report.summary
    methods = list(dict.fromkeys(r['label'] for r in rows))
    steps = sorted({int(r['step']) for r in rows})
    shown = [s for s in steps if s in (0, 1, 2, 3, 5, 10)] or steps
    shown = shown[:max_columns] if steps[-1] in shown[:max_columns] else \
        shown[:max_columns - 1] + [steps[-1]]
    lookup = {(r['label'], int(r['step'])): r for r in rows}
    # a reference (oracle, random: one step) fills every column; an adaptive method with fewer
    # steps than the table shows leaves the extra columns blank
    reference = {label for label in methods
                 if {int(r['step']) for r in rows if r['label'] == label} == {0}}
    lines = []
    sections = [('Mean return', 'return', 1)]
    if any(math.isfinite(r.get('score_mean', float('nan'))) for r in rows):
        sections.append(('Normalized score', 'score', 3))
    for title, key, digits in sections:
        lines += [f'**{title}** (95% bootstrap CI) after k adaptation steps', '',
                  '| method | ' + ' | '.join(f'k={s}' for s in shown) + ' |',
                  '|---|' + '---|' * len(shown)]
        for label in methods:
            cells = []
            for s in shown:
                row = lookup.get((label, 0 if label in reference else s))
                cells.append(_fmt(row[f'{key}_mean'], row[f'{key}_low'], row[f'{key}_high'],
                                  digits) if row else '')
            lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    lines += ['**Negative adaptation and cost** (at the last step)', '',
              '| method | steps | negative-adaptation rate | env steps | wall s | seeds x tasks |',
              '|---|---|---|---|---|---|']
    for label in methods:
        last = max(int(r['step']) for r in rows if r['label'] == label)
        row = lookup[(label, last)]
        neg = _fmt(row['neg_rate_mean'], row['neg_rate_low'], row['neg_rate_high'], 3)
        wall = _fmt(row['wall_s'], None, None, 1)
        lines.append(f"| {label} | {last} | {neg} | {row['env_steps']:.0f} | {wall} | "
                     f"{row['n_seeds']} x {row['n_tasks']} |")
    return '\n'.join(lines) + '\n'
