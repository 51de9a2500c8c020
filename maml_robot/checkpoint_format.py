"""
The checkpoint file format: a Checkpoint's fields <-> safetensors tensors and header JSON.

Tensors: ``params.<name>`` (policy parameters), ``inner_lr.<name>`` (Meta-SGD step sizes, when
learned), ``obs_mean``, ``obs_std``. The safetensors header metadata holds ``maml_robot``, a
JSON document with the format version, policy config, scenario snapshot, joint names in order,
observation layout, action scale (effort limits), control period, inner-loop settings,
algorithm config, adaptation operator, versions and training info, and ``maml_robot_sha256``,
the digest of that document and every tensor. No pickle anywhere. What a valid checkpoint is
(and the :class:`maml_robot.checkpoint.Checkpoint` itself) is ``maml_robot.checkpoint``'s.
"""

import json
from pathlib import Path
import platform
import struct

import maml_robot
from maml_robot.meta.operators import OPERATORS
from maml_robot.policy import PolicyConfig
from maml_robot.train_state import state_digest
import safetensors
import safetensors.torch
import torch

FORMAT_VERSION = 1
METADATA_KEY = 'maml_robot'
MAX_HEADER_BYTES = 100 * 1024 * 1024
DIGEST_KEY = 'maml_robot_sha256'
"""Header metadata: sha256 of the metadata JSON and every tensor (absent in older files)."""


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not match what the caller needs."""


def current_versions():
    """Return the versions recorded in new checkpoints."""
    return {'maml_robot': maml_robot.__version__, 'torch': torch.__version__,
            'safetensors': safetensors.__version__, 'python': platform.python_version()}


def _json(value, what):
    """Return ``value`` as JSON text; a CheckpointError names ``what`` if it is not JSON-able."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'checkpoint {what} is not JSON-able ({err}); store plain dicts, '
                              f'lists, strings and finite numbers') from err


def _metadata(ckpt):
    """Return the header JSON document of ``ckpt`` (everything but its tensors)."""
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


def encode(ckpt) -> bytes:
    """Return the bytes of the .safetensors file of ``ckpt`` (validated by the caller)."""
    meta = _json(_metadata(ckpt), 'metadata')
    tensors = {f'params.{k}': v for k, v in ckpt.params.items()}
    if ckpt.inner_lr is not None:
        tensors.update({f'inner_lr.{k}': v for k, v in ckpt.inner_lr.items()})
    tensors['obs_mean'] = ckpt.obs_mean
    tensors['obs_std'] = ckpt.obs_std
    tensors = {k: v.detach().to('cpu').contiguous() for k, v in tensors.items()}
    return safetensors.torch.save(tensors, metadata={
        'format': 'pt', METADATA_KEY: meta, DIGEST_KEY: state_digest(tensors, meta)})


def read_fields(path) -> dict:
    """
    Return the Checkpoint fields stored in the file ``path`` (not yet validated as a whole).

    Raises :class:`CheckpointError` naming the file for a missing, truncated, corrupted,
    foreign, wrong-version, edited (digest) or incomplete file.
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
    return _fields(path, meta, tensors)


def _read_header(path, blob):
    """Return ``(metadata document, its JSON text, digest or None)`` of a safetensors file."""
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
    """Return the tensors whose names start with ``prefix``, the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _fields(path, meta, tensors):
    """Return the Checkpoint fields of the header JSON ``meta`` and the file's tensors."""
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
    return {
        'policy_config': cfg, 'params': _split(tensors, 'params.'),
        'obs_mean': tensors['obs_mean'], 'obs_std': tensors['obs_std'],
        'joint_names': tuple(meta['joint_names']),
        'observation_layout': tuple(meta['observation_layout']),
        'action_scale': _numbers(path, meta, 'action_scale', many=True),
        'control_period': _numbers(path, meta, 'control_period'), 'inner': meta['inner'],
        'inner_lr': inner_lr,
        'scenario': meta.get('scenario') or {}, 'algorithm': meta.get('algorithm') or {},
        'adaptation': _adaptation(path, meta), 'training': meta.get('training') or {},
        'versions': meta.get('versions') or {},
        'format_version': version}


def _adaptation(path, meta):
    """Return the ``adaptation`` record (empty when absent); a malformed one is an error."""
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
