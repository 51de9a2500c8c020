"""Issue 18.3, 18.8: the divergence guard survives absurd rewards, failing updates, restarts."""

import math
import threading

from fault_nodes import fresh_checkpoint
from maml_robot import online
from maml_robot.checkpoint import load_checkpoint
from maml_robot.observation import RobotState
from maml_robot.online.loading import _saver, params_fingerprint
from maml_robot.policy import GaussianPolicy, PolicyConfig
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def shift_step(policy, params, episodes, lr, **kw):
    """Change the parameters a little, deterministically (a fake inner step)."""
    return {k: v + 0.01 for k, v in params.items()}


def make(inner_step_fn=shift_step, logs=None, **config):
    config.setdefault('synchronous', True)
    config.setdefault('ramp_in_steps', 0)
    config.setdefault('fade_in_steps', 0)
    config.setdefault('rollouts_per_step', 2)
    config.setdefault('rollback_z', 0.0)
    policy = GaussianPolicy(PolicyConfig(obs_dim=2, act_dim=2, hidden_sizes=(8,)))
    spec = online.AdapterSpec(joint_names=('a', 'b'), action_scale=np.ones(2), episode_steps=10,
                              observe=lambda s: s.joint_position, reward=lambda *a: 0.0)
    log = (logs.append if logs is not None else (lambda m: None))
    return online.OnlineAdapter(policy, policy.init_params(0), spec,
                                online.OnlineConfig(**config), inner_step_fn=inner_step_fn,
                                log=log)


def episodes(adapter, n, reward):
    state = RobotState(np.array([0.1, 0.2]), np.zeros(2))
    for _ in range(n * 10 + 1):
        adapter.act(state, 0.0, reward=reward)


def test_absurd_rewards_keep_the_reference_finite_and_the_guard_working():
    logs = []
    adapter = make(logs=logs)
    episodes(adapter, 2, 1e308)            # 1e308 per step: the return would be inf
    assert adapter.stats['rejected_rewards'] >= 20
    assert not math.isinf(adapter.stats['meta_return'])
    assert sum('reward' in m for m in logs) <= 2, 'reward warnings must be throttled'
    episodes(adapter, 2, -1.0)             # the meta-policy: -10 per episode
    assert adapter.stats['meta_return'] == pytest.approx(-10.0)
    assert adapter.stats['adaptations'] == 1
    episodes(adapter, 2, -100.0)           # the update made it -1000: revert to meta
    assert adapter.stats['reverts_to_meta'] == 1
    assert adapter.params is adapter.meta_params


def test_a_failing_update_is_logged_and_discarded_and_the_thread_lives():
    def broken(policy, params, episodes, lr, **kw):
        raise TypeError('unsupported operand')

    crashes = []
    hook, threading.excepthook = threading.excepthook, crashes.append
    try:
        logs = []
        adapter = make(broken, logs=logs, synchronous=False)
        for _ in range(3):
            episodes(adapter, 2, -1.0)
            assert adapter.wait_idle(10.0)
    finally:
        threading.excepthook = hook
    assert not crashes, f'the adaptation thread died: {crashes}'
    assert adapter.stats['rejected_updates'] >= 3 and adapter.stats['adaptations'] == 0
    assert any('TypeError' in m for m in logs)


def test_synchronous_update_of_overflowing_episodes_does_not_crash_act():
    adapter = make(reward_limit=1e300)        # let 1e299 rewards through to the update
    episodes(adapter, 3, 1e299)               # float32 episodes overflow
    assert adapter.stats['rejected_updates'] >= 1


def test_the_reference_is_persisted_and_restored(tmp_path):
    path = fresh_checkpoint(tmp_path / 'meta.safetensors')
    ckpt = load_checkpoint(path)
    persist = tmp_path / 'adapted.safetensors'
    saver = _saver(persist, ckpt, params_fingerprint(ckpt.params))
    adapter = make()
    episodes(adapter, 2, -1.0)
    saved = {}
    adapter._persist_fn = lambda params, info: saved.update(info)
    adapter.reset_adaptation()          # persists the meta-parameters and the reference
    assert saved['meta_return'] == pytest.approx(-10.0) and saved['meta_return_var'] == 0.0
    saver(ckpt.params, {'adaptations': 3, 'meta_return': -7.5, 'meta_return_var': 0.25})
    resumed = online.load_adapter(path, online.OnlineConfig(), persist_path=persist)
    assert resumed.stats['resumed'] and resumed.stats['meta_return'] == -7.5
    assert resumed._meta_sample == (-7.5, 0.25)


def test_reward_limit_is_validated():
    with pytest.raises(ValueError, match='reward_limit'):
        online.OnlineConfig(reward_limit=math.inf)
