"""Tests for checkpoints: round trip, atomic write, and a clear error for every failure."""

import json
import math
import os
import struct

from maml_robot.checkpoint import (Checkpoint, CheckpointError, load_checkpoint,
                                   save_checkpoint)
from maml_robot.meta.inner import InnerConfig
from maml_robot.policy import PolicyConfig
import pytest
import safetensors.torch
import torch

torch.set_num_threads(1)

CFG = PolicyConfig(obs_dim=4, act_dim=2, hidden_sizes=(8,))


def make_ckpt(**over):
    from maml_robot.policy import GaussianPolicy
    pol = GaussianPolicy(CFG)
    params = pol.init_params(3)
    kw = {'policy_config': CFG, 'params': params, 'obs_mean': torch.arange(4.0),
          'obs_std': torch.full((4,), 0.5), 'joint_names': ('joint_a', 'joint_b'),
          'observation_layout': ('q_a', 'q_b', 'dq_a', 'dq_b'), 'action_scale': (2.0, 1.5),
          'control_period': 0.02, 'inner': InnerConfig(lr=0.05).to_dict(),
          'inner_lr': {k: torch.full_like(v, 0.05) for k, v in params.items()},
          'scenario': {'name': 'toy', 'episode_steps': 50},
          'algorithm': {'name': 'promp', 'clip_eps': 0.3}, 'training': {'iterations': 7}}
    kw.update(over)
    return Checkpoint(**kw)


def rewrite(path, fn_tensors=None, fn_meta=None):
    """Rewrite a saved file with edited tensors / metadata (bypassing validation)."""
    from safetensors import safe_open
    with safe_open(str(path), 'pt') as f:
        meta = json.loads(f.metadata()['maml_robot'])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if fn_tensors:
        fn_tensors(tensors)
    if fn_meta:
        fn_meta(meta)
    path.write_bytes(safetensors.torch.save(tensors, {'maml_robot': json.dumps(meta)}))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / 'policy.safetensors'
    save_checkpoint(path, make_ckpt())
    return path


def test_per_layer_step_sizes_roundtrip_and_are_checked(tmp_path):
    params = make_ckpt().params
    per_layer = {k: torch.tensor(0.05 + i / 100) for i, k in enumerate(params)}
    path = tmp_path / 'lslr.safetensors'
    inner = InnerConfig(lr=0.05, learn_lr=True, lr_per='tensor').to_dict()
    save_checkpoint(path, make_ckpt(inner=inner, inner_lr=per_layer))
    got = load_checkpoint(path)
    assert got.inner_config().lr_per == 'tensor'
    assert all(torch.equal(got.inner_lr[k], per_layer[k]) for k in per_layer)
    with pytest.raises(CheckpointError, match='shape'):   # per-entry tensors, per-layer config
        save_checkpoint(tmp_path / 'bad.safetensors', make_ckpt(inner=inner))


def test_roundtrip_is_exact(saved):
    ref = make_ckpt()
    got = load_checkpoint(saved)
    for k in ref.params:
        assert torch.equal(got.params[k], ref.params[k])
        assert torch.equal(got.inner_lr[k], ref.inner_lr[k])
    assert torch.equal(got.obs_mean, ref.obs_mean)
    assert got.policy_config == CFG
    assert got.joint_names == ('joint_a', 'joint_b')
    assert got.action_scale == (2.0, 1.5)
    assert got.control_period == 0.02
    assert got.scenario_name == 'toy'
    assert got.inner_config().lr == 0.05
    assert got.versions['torch'] == torch.__version__
    pol = got.make_policy()
    assert torch.equal(pol.obs_std, ref.obs_std)
    no_lr = saved.parent / 'b.safetensors'
    save_checkpoint(no_lr, make_ckpt(inner_lr=None))
    assert load_checkpoint(no_lr).inner_step_size() == 0.05


def test_file_is_plain_safetensors_without_pickle(saved):
    blob = saved.read_bytes()
    assert b'pickle' not in blob and b'\x80\x04' not in blob[:8]
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = json.loads(header['__metadata__']['maml_robot'])
    assert meta['format_version'] == 1
    assert meta['joint_names'] == ['joint_a', 'joint_b']


def test_atomic_write_keeps_old_file_on_failure(saved, monkeypatch):
    before = saved.read_bytes()

    def boom(*args):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint(saved, make_ckpt(training={'iterations': 8}))
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == ['policy.safetensors']


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nope.safetensors')


@pytest.mark.parametrize('keep', [4, 100, -10])
def test_truncated_file(saved, keep):
    blob = saved.read_bytes()
    saved.write_bytes(blob[:keep])
    with pytest.raises(CheckpointError, match='truncated'):
        load_checkpoint(saved)


def test_corrupted_header(saved):
    blob = bytearray(saved.read_bytes())
    blob[10:14] = b'\xff\xfe{{'
    saved.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match='corrupted header'):
        load_checkpoint(saved)
    saved.write_bytes(struct.pack('<Q', 2 ** 40) + b'{}')
    with pytest.raises(CheckpointError, match='corrupted header'):
        load_checkpoint(saved)


def test_not_ours(tmp_path):
    path = tmp_path / 'other.safetensors'
    path.write_bytes(safetensors.torch.save({'w': torch.zeros(2)}))
    with pytest.raises(CheckpointError, match='not written by maml_robot'):
        load_checkpoint(path)


def test_wrong_format_version(saved):
    rewrite(saved, fn_meta=lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match='format version 99'):
        load_checkpoint(saved)


def test_missing_and_extra_tensors(saved, tmp_path):
    rewrite(saved, fn_tensors=lambda t: t.pop('params.log_std'))
    with pytest.raises(CheckpointError, match=r"missing \['log_std'\]"):
        load_checkpoint(saved)
    other = tmp_path / 'x.safetensors'
    save_checkpoint(other, make_ckpt())
    rewrite(other, fn_tensors=lambda t: t.update({'params.extra': torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"extra \['extra'\]"):
        load_checkpoint(other)
    save_checkpoint(other, make_ckpt())
    rewrite(other, fn_tensors=lambda t: t.pop('obs_std'))
    with pytest.raises(CheckpointError, match="'obs_std' is missing"):
        load_checkpoint(other)


def test_shape_mismatch_with_config(saved):
    def widen(meta):
        meta['policy_config']['hidden_sizes'] = [16]
    rewrite(saved, fn_meta=widen)
    with pytest.raises(CheckpointError, match='has shape'):
        load_checkpoint(saved)


def test_non_finite_values(saved, tmp_path):
    def poison(t):
        t['params.mean.bias'][0] = math.nan
    rewrite(saved, fn_tensors=poison)
    with pytest.raises(CheckpointError, match='NaN or inf'):
        load_checkpoint(saved)
    bad = make_ckpt(obs_std=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(CheckpointError, match='obs_std'):
        save_checkpoint(tmp_path / 'y.safetensors', bad)


def test_expectation_mismatches(saved):
    ok = {'scenario': 'toy', 'joint_names': ['joint_a', 'joint_b'], 'action_scale': [2, 1.5]}
    assert load_checkpoint(saved, expect=ok).scenario_name == 'toy'
    with pytest.raises(CheckpointError, match='scenario mismatch'):
        load_checkpoint(saved, expect={'scenario': 'cheetah'})
    with pytest.raises(CheckpointError, match='joint_names mismatch'):
        load_checkpoint(saved, expect={'joint_names': ['joint_b', 'joint_a']})
    with pytest.raises(CheckpointError, match='control_period mismatch'):
        load_checkpoint(saved, expect={'control_period': 0.01})

    class Scen:
        name = 'toy'
        joint_names = ('joint_a', 'joint_b')
        obs_dim = 5
        act_dim = 2

    with pytest.raises(CheckpointError, match='obs_dim mismatch'):
        load_checkpoint(saved, expect=Scen())


def test_invalid_checkpoint_refused_on_save(tmp_path):
    with pytest.raises(CheckpointError, match='joint_names'):
        save_checkpoint(tmp_path / 'z.safetensors', make_ckpt(joint_names=('a',)))
    with pytest.raises(CheckpointError, match='JSON'):
        save_checkpoint(tmp_path / 'z.safetensors', make_ckpt(training={'x': object()}))
    with pytest.raises(CheckpointError, match='action_scale'):
        save_checkpoint(tmp_path / 'z.safetensors', make_ckpt(action_scale=(1.0, -1.0)))
    assert not (tmp_path / 'z.safetensors').exists()
