"""Issue 18.12: a damaged or edited checkpoint says what is wrong, not 'lower the lr'."""

import dataclasses
import json

from fault_nodes import fresh_checkpoint
from maml_robot.checkpoint import (CheckpointError, DIGEST_KEY, load_checkpoint,
                                   METADATA_KEY, save_checkpoint)
from maml_robot.train_state import state_digest
import pytest
import safetensors
import safetensors.torch
import torch


def forge(path, meta_changes=None, tensor_changes=None, digest=True):
    """Rewrite a checkpoint with changed metadata/tensors, as another tool could write it."""
    blob = path.read_bytes()
    tensors = safetensors.torch.load(blob)
    with safetensors.safe_open(str(path), framework='pt') as f:
        header = f.metadata()
    meta = json.loads(header[METADATA_KEY])
    meta.update(meta_changes or {})
    tensors.update(tensor_changes or {})
    text = json.dumps(meta, sort_keys=True)
    metadata = {'format': 'pt', METADATA_KEY: text}
    if digest:
        metadata[DIGEST_KEY] = state_digest(tensors, text)
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    return path


def test_an_intact_checkpoint_loads(tmp_path):
    ckpt = load_checkpoint(fresh_checkpoint(tmp_path / 'c.safetensors'))
    assert ckpt.params['log_std'].shape == (2,)


def test_flipped_tensor_bytes_are_reported_as_damage(tmp_path):
    path = fresh_checkpoint(tmp_path / 'c.safetensors')
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40          # a float32 of the last tensor: still finite, silently wrong
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and 'damaged' in message and 'learning rate' not in message


def test_an_absurd_log_std_is_named(tmp_path):
    path = fresh_checkpoint(tmp_path / 'c.safetensors')
    forge(path, tensor_changes={'params.log_std': torch.full((2,), -100.0)})
    with pytest.raises(CheckpointError, match="params 'log_std' is \\[-100.0, -100.0\\], "
                                              'outside \\[-20, 10\\]'):
        load_checkpoint(path)
    ckpt = load_checkpoint(fresh_checkpoint(tmp_path / 'd.safetensors'))
    bad = dataclasses.replace(ckpt, params={**ckpt.params, 'log_std': torch.full((2,), 50.0)})
    with pytest.raises(CheckpointError, match="'log_std'"):
        save_checkpoint(tmp_path / 'e.safetensors', bad)


@pytest.mark.parametrize('key, value', [('action_scale', ['abc', 1.0]),
                                        ('action_scale', 3.0), ('control_period', 'fast')])
def test_non_numeric_metadata_is_named(tmp_path, key, value):
    path = forge(fresh_checkpoint(tmp_path / 'c.safetensors'), {key: value}, digest=False)
    with pytest.raises(CheckpointError, match=f'metadata {key} must be a') as err:
        load_checkpoint(path)
    assert 'could not convert' not in str(err.value)
