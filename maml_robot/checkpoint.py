"""
Checkpoints: ONE .safetensors file with the tensors and the deployment contract as JSON.

Tensors: ``params.<name>`` (policy parameters), ``inner_lr.<name>`` (Meta-SGD step sizes, when
learned), ``obs_mean``, ``obs_std``. The safetensors header metadata holds one key,
``maml_robot``, a JSON document with the format version, policy config, scenario snapshot,
joint names in order, observation layout, action scale (effort limits), control period,
inner-loop settings, algorithm config, adaptation operator, versions and training info. No
pickle anywhere.
"""

from dataclasses import dataclass, field
import json
import math
from pathlib import Path
import platform
import struct

import maml_robot
from maml_robot.atomic import write_bytes
from maml_robot.meta.inner import InnerConfig
from maml_robot.policy import GaussianPolicy, PolicyConfig
from maml_robot.train_state import state_digest
import safetensors
import safetensors.torch
import torch

FORMAT_VERSION = 1
METADATA_KEY = 'maml_robot'
MAX_HEADER_BYTES = 100 * 1024 * 1024
DIGEST_KEY = 'maml_robot_sha256'
"""Header metadata: sha256 of the metadata JSON and every tensor (absent in older files)."""

LOG_STD_RANGE = (-20.0, 10.0)
"""Plausible ``log_std`` of a policy: a standard deviation of 2e-9 .. 2e4 (actions are in
[-1, 1]); beyond it the file is damaged or edited, and adapting would divide by ~0."""


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not match what the caller needs."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything deployment needs from training; ``save_checkpoint`` writes it as one file."""

    policy_config: PolicyConfig
    """Network shape."""
    params: dict
    """Meta-parameters ``{name: Tensor}`` (names and shapes from ``policy_config``)."""
    obs_mean: torch.Tensor
    """(obs_dim,) observation normalization mean."""
    obs_std: torch.Tensor
    """(obs_dim,) observation normalization std (> 0)."""
    joint_names: tuple
    """Controlled joints in scenario order; actions follow this order."""
    observation_layout: tuple
    """A name per observation entry (length obs_dim)."""
    action_scale: tuple
    """Effort limit per joint: ``effort = action * action_scale``."""
    control_period: float
    """Seconds between actions."""
    inner: dict = field(default_factory=lambda: InnerConfig().to_dict())
    """Inner-loop settings (``InnerConfig.to_dict()``)."""
    inner_lr: dict = None
    """Meta-SGD per-parameter step sizes ``{name: Tensor}``; None uses ``inner['lr']``."""
    scenario: dict = field(default_factory=dict)
    """Scenario snapshot (``Scenario.to_dict()``); ``scenario['name']`` is checked on load."""
    algorithm: dict = field(default_factory=dict)
    """Outer algorithm name and config."""
    adaptation: dict = field(default_factory=dict)
    """The adaptation operator the meta-parameters were trained for: ``{'operator': 'pg'}``,
    or for es_maml ``{'operator': 'hill_climb' | 'es', 'settings': {field: value},
    'budget': live episodes}``; empty in older files (``adaptation_operator()``: 'pg')."""
    training: dict = field(default_factory=dict)
    """Training info: iterations, env steps, seed, wall time, ..."""
    versions: dict = field(default_factory=dict)
    """Package / torch / python versions (filled in by ``save_checkpoint`` when empty)."""
    format_version: int = FORMAT_VERSION
    """Checkpoint format version."""

    def make_policy(self):
        """Return a :class:`GaussianPolicy` with this checkpoint's normalization."""
        return GaussianPolicy(self.policy_config, self.obs_mean, self.obs_std)

    def inner_config(self):
        """Return the inner-loop settings as an :class:`InnerConfig`."""
        return InnerConfig.from_dict(self.inner)

    def inner_step_size(self):
        """Return the lr argument of ``inner_step``: a float or the Meta-SGD tensor dict."""
        if self.inner_lr is not None:
            return dict(self.inner_lr)
        return float(self.inner['lr'])

    def adaptation_operator(self):
        """Return the operator name the checkpoint was trained for ('pg' when not recorded)."""
        return self.adaptation.get('operator', 'pg')

    @property
    def scenario_name(self):
        """Return the scenario name recorded in the snapshot (None when absent)."""
        return self.scenario.get('name')


def current_versions():
    """Return the versions recorded in new checkpoints."""
    return {'maml_robot': maml_robot.__version__, 'torch': torch.__version__,
            'safetensors': safetensors.__version__, 'python': platform.python_version()}


def _json(value, what):
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'checkpoint {what} is not JSON-able ({err}); store plain dicts, '
                              f'lists, strings and finite numbers') from err


def _check_tensors(kind, tensors, shapes):
    missing = sorted(set(shapes) - set(tensors))
    extra = sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise CheckpointError(f'checkpoint {kind} tensors do not match the policy config: missing '
                              f'{missing}, extra {extra}; the file was written for another '
                              f'network shape')
    for name, shape in shapes.items():
        t = tensors[name]
        if not torch.is_tensor(t):
            raise CheckpointError(f'checkpoint {kind} {name!r} is not a tensor')
        if t.dtype != torch.float32:
            raise CheckpointError(f'checkpoint {kind} {name!r} has dtype {t.dtype} but '
                                  f'maml_robot checkpoints hold torch.float32 tensors; convert '
                                  f'them (tensor.float()) and save again')
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f'checkpoint {kind} {name!r} has shape {tuple(t.shape)} but the '
                                  f'policy config needs {tuple(shape)}')
        if not torch.isfinite(t).all():
            raise CheckpointError(f'checkpoint {kind} {name!r} contains NaN or inf; use an '
                                  f'earlier checkpoint (training diverged)')


def validate_checkpoint(ckpt):
    """Raise :class:`CheckpointError` unless ``ckpt`` is complete and self-consistent."""
    cfg = ckpt.policy_config
    if not isinstance(cfg, PolicyConfig):
        raise CheckpointError('policy_config must be a PolicyConfig')
    if ckpt.format_version != FORMAT_VERSION:
        raise CheckpointError(f'checkpoint format version {ckpt.format_version} is not supported '
                              f'(this maml_robot reads version {FORMAT_VERSION}); re-export it '
                              f'with a matching maml_robot version')
    shapes = cfg.param_shapes()
    _check_tensors('params', ckpt.params, shapes)
    log_std = ckpt.params['log_std']
    lo, hi = LOG_STD_RANGE
    if not ((log_std >= lo) & (log_std <= hi)).all():
        raise CheckpointError(f"checkpoint params 'log_std' is {log_std.tolist()}, outside "
                              f'[{lo:g}, {hi:g}] (a policy standard deviation of exp(log_std)); '
                              f'the file is damaged or was edited: use another checkpoint')
    if ckpt.inner_lr is not None:   # Meta-SGD: shaped like the params; per tensor: scalars
        per_tensor = isinstance(ckpt.inner, dict) and ckpt.inner.get('lr_per') == 'tensor'
        _check_tensors('inner_lr', ckpt.inner_lr,
                       {k: () for k in shapes} if per_tensor else shapes)
    _check_tensors('normalization', {'obs_mean': ckpt.obs_mean, 'obs_std': ckpt.obs_std},
                   {'obs_mean': (cfg.obs_dim,), 'obs_std': (cfg.obs_dim,)})
    if not (ckpt.obs_std > 0).all():
        raise CheckpointError('checkpoint obs_std has entries <= 0; it must be positive')
    joints = tuple(ckpt.joint_names)
    if len(joints) != cfg.act_dim or len(set(joints)) != len(joints):
        raise CheckpointError(f'checkpoint joint_names {list(joints)} must be {cfg.act_dim} '
                              f'distinct names (one per action)')
    scale = tuple(ckpt.action_scale)
    if len(scale) != cfg.act_dim or not all(math.isfinite(s) and s > 0 for s in scale):
        raise CheckpointError(f'checkpoint action_scale {list(scale)} must be {cfg.act_dim} '
                              f'finite positive effort limits')
    if len(tuple(ckpt.observation_layout)) != cfg.obs_dim:
        raise CheckpointError(f'checkpoint observation_layout has {len(ckpt.observation_layout)} '
                              f'names but obs_dim is {cfg.obs_dim}')
    if not (math.isfinite(ckpt.control_period) and ckpt.control_period > 0):
        raise CheckpointError(f'checkpoint control_period {ckpt.control_period} must be > 0 s')
    try:
        InnerConfig.from_dict(ckpt.inner)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'checkpoint inner settings are invalid: {err}') from err


def _metadata(ckpt):
    return {
        'format_version': ckpt.format_version,
        'policy_config': ckpt.policy_config.to_dict(),
        'joint_names': list(ckpt.joint_names),
        'observation_layout': list(ckpt.observation_layout),
        'action_scale': [float(s) for s in ckpt.action_scale],
        'control_period': float(ckpt.control_period),
        'inner': dict(ckpt.inner),
        'has_inner_lr': ckpt.inner_lr is not None,
        'scenario': ckpt.scenario,
        'algorithm': ckpt.algorithm,
        'adaptation': ckpt.adaptation,
        'training': ckpt.training,
        'versions': ckpt.versions or current_versions(),
    }


def save_checkpoint(path, ckpt):
    """
    Validate ``ckpt`` and write it to ``path`` atomically (:mod:`maml_robot.atomic`).

    A crash during the write never leaves a half-written file at ``path``.
    """
    validate_checkpoint(ckpt)
    meta = _json(_metadata(ckpt), 'metadata')
    tensors = {f'params.{k}': v for k, v in ckpt.params.items()}
    if ckpt.inner_lr is not None:
        tensors.update({f'inner_lr.{k}': v for k, v in ckpt.inner_lr.items()})
    tensors['obs_mean'] = ckpt.obs_mean
    tensors['obs_std'] = ckpt.obs_std
    tensors = {k: v.detach().to('cpu').contiguous() for k, v in tensors.items()}
    blob = safetensors.torch.save(tensors, metadata={
        'format': 'pt', METADATA_KEY: meta, DIGEST_KEY: state_digest(tensors, meta)})
    path = write_bytes(path, blob)
    return path


def _read_header(path, blob):
    if len(blob) < 8:
        raise CheckpointError(f'{path}: file is truncated ({len(blob)} bytes); use an intact '
                              f'copy or an earlier checkpoint')
    (n,) = struct.unpack('<Q', blob[:8])
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f'{path}: corrupted header (claims {n} bytes); this is not a '
                              f'maml_robot .safetensors checkpoint')
    if 8 + n > len(blob):
        raise CheckpointError(f'{path}: file is truncated (header needs {8 + n} bytes, file has '
                              f'{len(blob)}); use an intact copy or an earlier checkpoint')
    try:
        header = json.loads(blob[8:8 + n].decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f'{path}: corrupted header ({err}); the file is damaged or not '
                              f'a safetensors file') from err
    if not isinstance(header, dict):
        raise CheckpointError(f'{path}: corrupted header (not a JSON object)')
    end = 0
    for name, info in header.items():
        if name == '__metadata__':
            continue
        try:
            end = max(end, int(info['data_offsets'][1]))
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise CheckpointError(f'{path}: corrupted header entry for {name!r}') from err
    data_len = len(blob) - 8 - n
    if end > data_len:
        raise CheckpointError(f'{path}: file is truncated (tensor data needs {end} bytes, has '
                              f'{data_len}); use an intact copy or an earlier checkpoint')
    if end < data_len:
        raise CheckpointError(f'{path}: {data_len - end} unexpected trailing bytes; the file is '
                              f'damaged')
    meta = header.get('__metadata__') or {}
    if METADATA_KEY not in meta:
        raise CheckpointError(f'{path}: no {METADATA_KEY!r} metadata in the header; this '
                              f'.safetensors file was not written by maml_robot.save_checkpoint')
    try:
        return json.loads(meta[METADATA_KEY]), meta[METADATA_KEY], meta.get(DIGEST_KEY)
    except ValueError as err:
        raise CheckpointError(f'{path}: corrupted {METADATA_KEY!r} metadata ({err})') from err


def _split(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_checkpoint(path, expect=None):
    """
    Read and validate a checkpoint; raise :class:`CheckpointError` saying what to change.

    :param path: the .safetensors file.
    :param expect: optional mapping of what the caller needs, any of ``scenario`` (name),
        ``joint_names``, ``obs_dim``, ``act_dim``, ``observation_layout``, ``control_period``,
        ``action_scale``; or a scenario object (see :func:`expectation_from_scenario`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint file not found: {path}; pass the path of a '
                              f'.safetensors file written by `maml-robot train`')
    blob = path.read_bytes()
    meta, meta_text, digest = _read_header(path, blob)
    try:
        tensors = safetensors.torch.load(blob)
    except (safetensors.SafetensorError, RuntimeError, ValueError) as err:
        raise CheckpointError(f'{path}: unreadable tensor data ({err})') from err
    if digest is not None and state_digest(tensors, meta_text) != digest:
        raise CheckpointError(f'{path}: the file is damaged: its tensors or metadata do not '
                              f'match the sha256 it was saved with (flipped bytes, or edited); '
                              f'use an intact copy or an earlier checkpoint')
    ckpt = _from_parts(path, meta, tensors)
    if expect is not None:
        check_expectation(ckpt, expect, path)
    return ckpt


def _from_parts(path, meta, tensors):
    if not isinstance(meta, dict):
        raise CheckpointError(f'{path}: metadata is not a JSON object')
    version = meta.get('format_version')
    if version != FORMAT_VERSION:
        raise CheckpointError(f'{path}: checkpoint format version {version!r} is not supported '
                              f'(this maml_robot reads version {FORMAT_VERSION}); re-train or '
                              f'convert it with the maml_robot version that wrote it')
    required = ('policy_config', 'joint_names', 'observation_layout', 'action_scale',
                'control_period', 'inner', 'has_inner_lr')
    missing = [k for k in required if k not in meta]
    if missing:
        raise CheckpointError(f'{path}: metadata lacks {missing}; the file is incomplete')
    try:
        cfg = PolicyConfig.from_dict(meta['policy_config'])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'{path}: invalid policy_config: {err}') from err
    known = {'obs_mean', 'obs_std'}
    stray = sorted(k for k in tensors if k not in known and not k.startswith(('params.',
                                                                             'inner_lr.')))
    if stray:
        raise CheckpointError(f'{path}: unexpected tensors {stray}')
    for k in known:
        if k not in tensors:
            raise CheckpointError(f'{path}: tensor {k!r} is missing')
    inner_lr = _split(tensors, 'inner_lr.') if meta['has_inner_lr'] else None
    if inner_lr is None and _split(tensors, 'inner_lr.'):
        raise CheckpointError(f'{path}: inner_lr tensors present but metadata says none')
    ckpt = Checkpoint(
        policy_config=cfg, params=_split(tensors, 'params.'), obs_mean=tensors['obs_mean'],
        obs_std=tensors['obs_std'], joint_names=tuple(meta['joint_names']),
        observation_layout=tuple(meta['observation_layout']),
        action_scale=_numbers(path, meta, 'action_scale', many=True),
        control_period=_numbers(path, meta, 'control_period'), inner=meta['inner'],
        inner_lr=inner_lr,
        scenario=meta.get('scenario') or {}, algorithm=meta.get('algorithm') or {},
        adaptation=_adaptation(path, meta), training=meta.get('training') or {},
        versions=meta.get('versions') or {},
        format_version=version)
    try:
        validate_checkpoint(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f'{path}: {err}') from err
    return ckpt


def _adaptation(path, meta):
    """Return the ``adaptation`` record (empty when absent); a malformed one is an error."""
    from maml_robot.meta.operators import OPERATORS
    record = meta.get('adaptation') or {}
    if not isinstance(record, dict) or record.get('operator', 'pg') not in OPERATORS or \
            not isinstance(record.get('settings', {}), dict):
        raise CheckpointError(f'{path}: metadata adaptation {record!r} is malformed: expected '
                              f"{{'operator': one of {sorted(OPERATORS)}, 'settings': {{...}}}}")
    return record


def _numbers(path, meta, key, many=False):
    """Return metadata ``key`` as a float (a tuple of floats if ``many``); name it if not."""
    value = meta[key]
    items = value if many and isinstance(value, list) else [value]
    if (many and not isinstance(value, list)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        what = 'a list of numbers' if many else 'a number'
        raise CheckpointError(f'{path}: metadata {key} must be {what}, got {value!r}')
    return tuple(float(v) for v in items) if many else float(value)


def expectation_from_scenario(scenario):
    """Return the ``expect`` mapping for a scenario object (name, joints, dims, period)."""
    exp = {}
    for key, attr in (('scenario', 'name'), ('joint_names', 'joint_names'),
                      ('obs_dim', 'obs_dim'), ('act_dim', 'act_dim'),
                      ('control_period', 'control_period')):
        if hasattr(scenario, attr):
            exp[key] = getattr(scenario, attr)
    if hasattr(scenario, 'action_scale'):
        exp['action_scale'] = [float(x) for x in scenario.action_scale]
    return exp


def check_expectation(ckpt, expect, path='checkpoint'):
    """Raise :class:`CheckpointError` where ``ckpt`` differs from ``expect`` (see load)."""
    if not isinstance(expect, dict):
        expect = expectation_from_scenario(expect)
    unknown = set(expect) - {'scenario', 'joint_names', 'obs_dim', 'act_dim',
                             'observation_layout', 'control_period', 'action_scale'}
    if unknown:
        raise ValueError(f'unknown expect keys {sorted(unknown)}')
    have = {'scenario': ckpt.scenario_name, 'joint_names': list(ckpt.joint_names),
            'obs_dim': ckpt.policy_config.obs_dim, 'act_dim': ckpt.policy_config.act_dim,
            'observation_layout': list(ckpt.observation_layout),
            'control_period': ckpt.control_period, 'action_scale': list(ckpt.action_scale)}
    for key, want in expect.items():
        got = have[key]
        if key in ('joint_names', 'observation_layout', 'action_scale'):
            want = list(want)
        if key in ('control_period', 'action_scale'):
            same = len(got) == len(want) and all(
                math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, want)) \
                if isinstance(got, list) else math.isclose(got, want, rel_tol=1e-6)
        else:
            same = got == want
        if not same:
            raise CheckpointError(f'{path}: {key} mismatch: the checkpoint has {got!r}, the '
                                  f'robot/scenario expects {want!r}; use a checkpoint trained '
                                  f'for this robot (or fix the scenario)')
