"""
A training run's folder: may a run start or resume in it, and its progress log.

The files (written by :class:`maml_robot.meta.trainer.Trainer`)::

    <out>/config.yaml          the resolved TrainConfig (a resumed run must match it)
    <out>/run.yaml             the run's identity (``run_id``), written when it starts
    <out>/progress.csv         a row per iteration: returns before/after adaptation, stats, timing
    <out>/tensorboard/         the same numbers for TensorBoard
    <out>/latest.safetensors   deployable checkpoint (maml_robot.checkpoint), every few iterations
    <out>/best.safetensors     the checkpoint with the best post-adaptation return so far
    <out>/resume.safetensors   exact training state (tensors + JSON) for ``--resume``
"""

import csv
import io
from pathlib import Path
import uuid

from maml_robot.atomic import write_text
from maml_robot.train_config import TrainConfig
from maml_robot.train_state import load_train_state
import yaml

RESUME_FILE = 'resume.safetensors'
LATEST_FILE = 'latest.safetensors'
BEST_FILE = 'best.safetensors'
CSV_FILE = 'progress.csv'
RUN_FILE = 'run.yaml'
"""The run's identity (``run_id``), written when it starts; every resume state carries it."""

MAY_DIFFER_ON_RESUME = ('iterations', 'device', 'workers', 'checkpoint_every', 'step_timeout',
                        'max_retries')
"""TrainConfig keys a resumed run may change: the results stay (device: the last bits)."""


def prepare_run_folder(out: Path, config: TrainConfig, resume: bool) -> tuple:
    """
    Check that a run may start (or resume) in ``out``; write its config.yaml.

    Returns ``(run_id, resume)``: ``resume`` is the resume file's ``(state, info)``
    (:func:`check_resume_file`) or None for a new run, which needs a folder without a run in
    it and gets a fresh ``run_id`` in run.yaml. A resumed run's settings must equal those of
    its config.yaml, except :data:`MAY_DIFFER_ON_RESUME`.
    """
    cfg_file = out / 'config.yaml'
    resume_state = None
    if resume:
        if not cfg_file.is_file():
            raise FileNotFoundError(f'{cfg_file} not found: nothing to resume in {out}')
        with open(cfg_file, encoding='utf-8') as f:
            saved = TrainConfig.from_dict(yaml.safe_load(f), str(cfg_file))
        diff = changed_keys(saved.to_dict(), config.to_dict())
        if diff:
            raise ValueError(f'--resume: settings {diff} differ from the run saved in '
                             f'{cfg_file}; drop those overrides or train into a new --out')
        resume_state = check_resume_file(out, cfg_file, saved)
        run_id = resume_state[1].get('run_id')
    elif (out / RESUME_FILE).exists() or (out / CSV_FILE).exists():
        raise ValueError(f'{out} already holds a training run; pass --resume to '
                         'continue it, or choose another --out')
    else:
        run_id = uuid.uuid4().hex
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / RUN_FILE, yaml.safe_dump({'run_id': run_id}))
    write_text(cfg_file, yaml.safe_dump(config.to_dict(), sort_keys=False))
    return run_id, resume_state


def check_resume_file(out: Path, cfg_file: Path, saved: TrainConfig) -> tuple:
    """
    Return ``(state, info)`` of the resume file after checking it belongs to this folder.

    The file must be whole (its sha256), come from this run (``run_id`` of run.yaml) and
    have been saved with the settings of config.yaml (an edited seed or outer_lr would
    otherwise resume with other numbers, or be recorded and not used).
    """
    path = out / RESUME_FILE
    state, info = load_train_state(path)
    run_file = out / RUN_FILE
    if run_file.is_file() and info.get('run_id') is not None:
        with open(run_file, encoding='utf-8') as f:
            run_id = (yaml.safe_load(f) or {}).get('run_id')
        if info['run_id'] != run_id:
            raise ValueError(f'--resume: {path} belongs to another run (run_id '
                             f'{info["run_id"]}, {run_file} of this folder says {run_id}); '
                             "restore this run's own resume file or start a new run")
    recorded = info.get('config')
    if recorded is not None:
        diff = changed_keys(recorded, saved.to_dict())
        if diff:
            values = ', '.join(f'{k}: {recorded.get(k)!r} -> {saved.to_dict().get(k)!r}'
                               for k in diff)
            raise ValueError(f'--resume: {cfg_file} was edited after the run started '
                             f'({values}; the run recorded the former in {path}); undo '
                             'the edit, or train into a new --out')
    return state, info


def changed_keys(before: dict, after: dict) -> list:
    """Return the TrainConfig keys that differ and that a resumed run may not change."""
    return [k for k in sorted(set(before) & set(after))   # a key an older run lacks: skipped
            if k not in MAY_DIFFER_ON_RESUME and before.get(k) != after.get(k)]


class ProgressLog:
    """
    The run's progress.csv and TensorBoard scalars: one row per completed iteration.

    The CSV's columns are those of its first row (or of the file a resumed run continues).

    :param path: the CSV file (``<out>/progress.csv``).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fields = None
        """The CSV columns; None until the first row is written or a file is truncated."""

    def append(self, row: dict, writer) -> None:
        """Append ``row`` to the CSV and every value but the iteration to TensorBoard."""
        if self.fields is None:
            self.fields = list(row)
        new_file = not self.path.exists()
        with open(self.path, 'a', newline='', encoding='utf-8') as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction='ignore')
            if new_file:
                w.writeheader()
            w.writerow(row)
        for key, value in row.items():
            if key != 'iteration':
                writer.add_scalar(f'train/{key}', value, row['iteration'])
        writer.flush()

    def truncate(self, iterations_done: int) -> None:
        """Drop log rows of iterations after the saved state (they will be run again)."""
        path = self.path
        if not path.exists():
            return
        with open(path, newline='', encoding='utf-8') as f:
            rows = list(csv.DictReader(f))
            fields = list(rows[0]) if rows else None
        rows = [r for r in rows if int(r['iteration']) < iterations_done]
        if fields is None:
            path.unlink()
            return
        self.fields = fields
        text = io.StringIO(newline='')
        w = csv.DictWriter(text, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
        write_text(path, text.getvalue())
