"""Exact, pickle-free save/load of training state (nested dicts of tensors) for ``--resume``."""

import hashlib
import json
from pathlib import Path

from maml_robot.atomic import atomic_path
from safetensors import safe_open
from safetensors.torch import save_file
import torch

FORMAT = 'maml_robot.train_state/1'


def flatten_state(tree, prefix: str = 'state'):
    """
    Split a nested structure into ``(tensors, skeleton)``.

    ``tensors`` maps dotted paths to tensors; ``skeleton`` is JSON-able and keeps everything
    else (numbers, strings, lists, tuples, dicts with int keys such as optimizer state), with
    ``{'__tensor__': path}`` where a tensor was.
    """
    tensors = {}

    def walk(node, path):
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous().clone()
            return {'__tensor__': path}
        if isinstance(node, dict):
            if all(isinstance(k, str) for k in node):
                return {'__dict__': [[k, walk(v, f'{path}.{k}')] for k, v in node.items()]}
            if all(isinstance(k, int) and not isinstance(k, bool) for k in node):
                return {'__intdict__': [[k, walk(v, f'{path}.{k}')] for k, v in node.items()]}
            raise TypeError(f'cannot save dict keys at {path}: {list(node)[:5]}')
        if isinstance(node, (list, tuple)):
            items = [walk(v, f'{path}.{i}') for i, v in enumerate(node)]
            return {'__tuple__': items} if isinstance(node, tuple) else items
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f'cannot save a {type(node).__name__} at {path} without pickle')

    skeleton = walk(tree, prefix)
    return tensors, skeleton


def unflatten_state(tensors: dict, skeleton, device=None):
    """Invert :func:`flatten_state` (tensors moved to ``device`` when given)."""
    def walk(node):
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            if '__tensor__' in node:
                t = tensors[node['__tensor__']]
                return t.to(device) if device is not None else t
            if '__dict__' in node:
                return {k: walk(v) for k, v in node['__dict__']}
            if '__intdict__' in node:
                return {int(k): walk(v) for k, v in node['__intdict__']}
            if '__tuple__' in node:
                return tuple(walk(v) for v in node['__tuple__'])
            raise ValueError(f'unknown node in training state skeleton: {sorted(node)}')
        return node

    return walk(skeleton)


def state_digest(tensors: dict, *texts: str) -> str:
    """Return the sha256 of the texts (JSON metadata) and the tensors (sorted by name)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode('utf-8') + b'\0')
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f'{name}:{t.dtype}:{tuple(t.shape)}'.encode('utf-8') + b'\0')
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_train_state(path, state: dict, info: dict) -> None:
    """
    Write ``state`` (nested tensors) and ``info`` (JSON-able) to one .safetensors file.

    The write is atomic (:mod:`maml_robot.atomic`): a crash mid-write never leaves a truncated
    state behind.
    """
    path = Path(path)
    tensors, skeleton = flatten_state(state)
    metadata = {'format': FORMAT, 'skeleton': json.dumps(skeleton), 'info': json.dumps(info)}
    metadata['sha256'] = state_digest(tensors, metadata['skeleton'], metadata['info'])
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_train_state(path, device=None):
    """Return ``(state, info)`` saved by :func:`save_train_state`; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'no training state at {path}; cannot resume (start without '
                                '--resume, or point --out at the run to continue)')
    try:
        with safe_open(str(path), framework='pt') as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: B902 - safetensors raises several error types
        raise damaged(path, f'not a readable training state: {err}') from None
    if metadata.get('format') != FORMAT:
        raise ValueError(f'{path} has format {metadata.get("format")!r}, expected {FORMAT!r}')
    want = metadata.get('sha256')       # absent in files written before the checksum
    if want is not None and state_digest(tensors, metadata.get('skeleton', ''),
                                         metadata.get('info', '')) != want:
        raise damaged(path, 'its content does not match the sha256 it was saved with')
    try:
        skeleton = json.loads(metadata['skeleton'])
        info = json.loads(metadata['info'])
        return unflatten_state(tensors, skeleton, device), info
    except (KeyError, ValueError) as err:
        raise damaged(path, f'unreadable metadata: {err!r}') from None


def damaged(path, cause: str) -> ValueError:
    """Return the error for a damaged training state file (names the file and the cause)."""
    return ValueError(f'{path} is damaged ({cause}); resume from a copy of the run folder or '
                      'start a new run')
