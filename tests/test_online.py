"""OnlineAdapter without ROS: every safety item of the design, and real online adaptation."""

import re
import threading
import time

from maml_robot.observation import RobotState
import maml_robot.online as online
from maml_robot.online.diagnostics import RepeatGate
from maml_robot.policy import GaussianPolicy, PolicyConfig
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
TARGET = np.array([0.5, -0.5])
SCALE = np.array([2.0, 3.0])


def observe(state):
    return np.concatenate([state.joint_position, state.joint_velocity[:1]])


def target_reward(state, action, next_state):
    """Reward of a toy task: bring the normalized action to TARGET."""
    return -float(np.sum((np.asarray(action) - TARGET) ** 2))


def make_adapter(inner_step_fn=None, persist_fn=None, spec_kw=None, seed=0,
                 log=lambda msg: None, **config):
    config.setdefault('synchronous', True)
    config.setdefault('ramp_in_steps', 0)
    config.setdefault('fade_in_steps', 0)
    config.setdefault('rollouts_per_step', 2)
    policy = GaussianPolicy(PolicyConfig(obs_dim=3, act_dim=2, hidden_sizes=(8,),
                                         init_log_std=-0.5))
    spec = online.AdapterSpec(joint_names=('a_joint', 'b_joint'), action_scale=SCALE,
                              episode_steps=10, observe=observe, reward=target_reward,
                              inner_lr=0.5, **(spec_kw or {}))
    meta = policy.init_params(seed)
    return online.OnlineAdapter(policy, meta, spec, online.OnlineConfig(**config), seed=seed,
                                inner_step_fn=inner_step_fn, persist_fn=persist_fn,
                                log=log)


def state(pos=(0.1, -0.2), vel=(0.0, 0.0)):
    return RobotState(np.array(pos, dtype=float), np.array(vel, dtype=float))


def run(adapter, steps, **kw):
    return [adapter.act(state(), 0.0, **kw) for _ in range(steps)]


def force(adapter, bias):
    """Make the acting parameters give a mean action of about ``bias``."""
    new = shifted(adapter.params, bias)
    with adapter._lock:
        adapter._params = new


def shifted(params, bias):
    """Return params whose mean action is about ``bias`` (a fake, deterministic update)."""
    new = dict(params)
    new['mean.bias'] = torch.as_tensor(bias, dtype=torch.float32)
    new['mean.weight'] = torch.zeros_like(params['mean.weight'])
    return new


def test_config_rejects_bad_values_by_name():
    with pytest.raises(ValueError, match='rollouts_per_step'):
        online.OnlineConfig(rollouts_per_step=0)
    with pytest.raises(ValueError, match='state_timeout'):
        online.OnlineConfig(state_timeout=float('nan'))
    with pytest.raises(ValueError, match='rate_limit'):
        online.OnlineConfig(rate_limit=-1.0)
    with pytest.raises(ValueError, match='rollback_z'):
        online.OnlineConfig(rollback_z=-1.0)
    with pytest.raises(ValueError, match='accept_window'):
        online.OnlineConfig(accept_window=-1)
    assert online.OnlineConfig().window == 20 == online.OnlineConfig().rollouts_per_step
    assert online.OnlineConfig(accept_window=3).window == 3


def test_watchdog_holds_and_freezes_adaptation():
    adapter = make_adapter(rollouts_per_step=1, state_timeout=0.05)
    cmd = adapter.act(state(), 0.01)
    assert cmd.mode == online.MODE_POLICY and np.any(cmd.effort != 0)
    for age in (0.051, float('inf'), float('nan')):
        cmd = adapter.act(state(), age)
        assert cmd.mode == online.MODE_STALE and np.all(cmd.effort == 0) and adapter.frozen
    assert adapter.act(None, 0.0).mode == online.MODE_STALE
    # a full episode's worth of stale steps collects nothing and adapts nothing
    for _ in range(30):
        adapter.act(state(), 1.0)
    assert adapter.stats['episodes'] == 0 and adapter.stats['adaptations'] == 0
    assert adapter.act(state(), 0.0).mode == online.MODE_POLICY and not adapter.frozen


def test_actions_clamped_to_limits_and_rate_limited():
    adapter = make_adapter(adapt=False)
    force(adapter, [50.0, -80.0])
    cmd = adapter.act(state(), 0.0)
    np.testing.assert_array_equal(cmd.effort, [2.0, -3.0])
    limited = make_adapter(adapt=False, rate_limit=0.1)
    force(limited, [50.0, -80.0])
    actions = [c.action for c in run(limited, 12)]
    steps = np.abs(np.diff([np.zeros(2)] + actions, axis=0))
    assert steps.max() <= 0.1 + 1e-12
    np.testing.assert_allclose(actions[-1], [1.0, -1.0])


def test_non_finite_observations_and_rewards_are_rejected():
    adapter = make_adapter(rollouts_per_step=1)
    cmd = adapter.act(state(pos=(np.nan, 0.0)), 0.0)
    assert cmd.mode == online.MODE_BAD_OBS and np.all(cmd.effort == 0)
    assert adapter.act(state(vel=(np.inf, 0.0)), 0.0).mode == online.MODE_BAD_OBS
    assert adapter.stats['rejected_observations'] == 2
    for _ in range(25):
        cmd = adapter.act(state(), 0.0, reward=float('nan'))
        assert np.all(np.isfinite(cmd.effort))
    assert adapter.stats['rejected_rewards'] >= 20 and adapter.stats['episodes'] == 0


def test_non_finite_update_and_parameters_are_rejected():
    def nan_step(policy, params, episodes, lr, **kw):
        return {k: v * float('nan') for k, v in params.items()}

    adapter = make_adapter(nan_step, rollouts_per_step=1)
    before = adapter.params
    run(adapter, 40)
    assert adapter.stats['rejected_updates'] >= 1 and adapter.stats['adaptations'] == 0
    assert adapter.params is before
    policy = GaussianPolicy(PolicyConfig(obs_dim=3, act_dim=2))
    bad = {k: v * float('inf') for k, v in policy.init_params(0).items()}
    spec = adapter.spec
    with pytest.raises(ValueError, match='NaN or inf'):
        online.OnlineAdapter(policy, bad, spec, online.OnlineConfig())
    with pytest.raises(ValueError, match='persisted parameters'):
        online.OnlineAdapter(policy, policy.init_params(0), spec, online.OnlineConfig(),
                             initial_params=bad)


def test_ramp_in_then_fade_in_and_again_after_estop_release():
    adapter = make_adapter(adapt=False, ramp_in_steps=3, fade_in_steps=4)
    force(adapter, [0.8, 0.8])
    cmds = run(adapter, 9)
    assert [c.mode for c in cmds[:3]] == [online.MODE_RAMP] * 3
    assert all(np.all(c.effort == 0) for c in cmds[:3])
    fade = [c.action[0] for c in cmds[3:7]]
    assert [c.mode for c in cmds[3:7]] == [online.MODE_FADE] * 4
    assert all(0 < a < b for a, b in zip(fade, fade[1:])) and fade[-1] < 0.8
    assert cmds[7].mode == online.MODE_POLICY
    np.testing.assert_allclose(cmds[8].action, [0.8, 0.8], atol=1e-5)
    adapter.set_estop(True)
    adapter.set_estop(False)
    assert adapter.act(state(), 0.0).mode == online.MODE_RAMP


def test_estop_latches_until_released():
    adapter = make_adapter()
    adapter.set_estop(True)
    for age in (0.0, 0.0, 0.0, 10.0, 0.0):
        cmd = adapter.act(state(), age)
        assert cmd.mode == online.MODE_ESTOP and np.all(cmd.effort == 0)
    adapter.set_estop(False)
    assert adapter.act(state(), 0.0).mode == online.MODE_POLICY


def test_adaptation_runs_off_the_control_path_and_swaps_atomically():
    started, release = threading.Event(), threading.Event()

    def slow_step(policy, params, episodes, lr, **kw):
        started.set()
        release.wait(5.0)
        return shifted(params, TARGET)

    adapter = make_adapter(slow_step, rollouts_per_step=1, synchronous=False)
    meta_bias = adapter.params['mean.bias'].clone()
    run(adapter, 11)
    assert started.wait(2.0)
    old = adapter.params
    worst = 0.0
    for _ in range(50):          # the control loop keeps going while the update "computes"
        t0 = time.perf_counter()
        adapter.act(state(), 0.0)
        worst = max(worst, time.perf_counter() - t0)
    assert worst < 0.05 and adapter.params is old and adapter.stats['adaptations'] == 0
    release.set()
    assert adapter.wait_idle(5.0)
    assert adapter.params is not old and adapter.stats['adaptations'] == 1
    torch.testing.assert_close(old['mean.bias'], meta_bias)      # the old dict was not mutated
    torch.testing.assert_close(adapter.params['mean.bias'], torch.tensor([0.5, -0.5]))


def test_worse_update_is_rolled_back_and_divergence_reverts_to_meta():
    plan = [TARGET, [0.3, -0.3], [-1.0, 1.0]]

    def scripted(policy, params, episodes, lr, **kw):
        return shifted(params, plan.pop(0))

    adapter = make_adapter(scripted, rollouts_per_step=2, accept_window=2, max_param_delta=1e3,
                           rollback_margin=0.1, divergence_margin=0.5, rollback_z=0.0)
    adapter.act(state(), 0.0)
    for _ in range(2 * 10):
        adapter.act(state(), 0.0)
    meta_return = adapter.stats['meta_return']
    assert np.isfinite(meta_return) and adapter.stats['adaptations'] == 1
    for _ in range(2 * 10):      # judge update 1 (better: accepted), then update 2 starts
        adapter.act(state(), 0.0)
    assert adapter.stats['adaptations'] == 2 and adapter.stats['rollbacks'] == 0
    accepted = adapter._prev[0]
    for _ in range(2 * 10):      # update 2 (worse than update 1, not diverged): rolled back
        adapter.act(state(), 0.0)
    assert adapter.stats['rollbacks'] == 1 and adapter.params is accepted
    for _ in range(4 * 10):      # update 3 (far below the meta-policy): back to meta
        adapter.act(state(), 0.0)
    assert adapter.stats['reverts_to_meta'] == 1 and adapter.params is adapter.meta_params


def judged_updates(plan, rollback_z, updates):
    """Run ``updates`` scripted updates (each moves the mean action to the next of ``plan``)."""
    def scripted(policy, params, episodes, lr, **kw):
        return shifted(params, plan[min(len(plan) - 1, adapter.stats['adaptations'])])

    adapter = make_adapter(scripted, rollouts_per_step=8, max_param_delta=1e3, seed=5,
                           rollback_z=rollback_z)
    force(adapter, plan[0])
    while adapter.stats['adaptations'] < updates:
        adapter.act(state(), 0.0)
    run(adapter, 8 * 10)   # judge the last one
    return adapter.stats


def test_rollback_tells_a_worse_update_from_noisy_returns():
    # Episode returns are noisy (exploration noise here, goals and start states on a robot).
    # Updates that change nothing should rarely be rolled back for a drop that is only noise;
    # an update that makes the policy clearly worse still is. Default window: 8 episodes.
    same = judged_updates([TARGET], rollback_z=1.64, updates=30)
    margins_only = judged_updates([TARGET], rollback_z=0.0, updates=30)
    assert same['reverts_to_meta'] == 0 and same['rollbacks'] <= 6   # 4 of 30 with this seed
    # the margin alone mistakes noise for a drop far more often (14 of 30 with this seed)
    assert margins_only['rollbacks'] >= same['rollbacks'] + 6
    worse = judged_updates([TARGET, [-0.5, 0.5]], rollback_z=1.64, updates=3)
    assert worse['rollbacks'] + worse['reverts_to_meta'] >= 2


def test_update_norm_is_limited_by_max_param_delta():
    adapter = make_adapter(lambda p, params, e, lr, **kw: shifted(params, [40.0, 40.0]),
                           rollouts_per_step=1, max_param_delta=0.25)
    meta = adapter.params
    run(adapter, 11)
    new = adapter.params
    norm = torch.sqrt(sum(((new[k] - meta[k]).double() ** 2).sum() for k in meta))
    assert adapter.stats['adaptations'] == 1 and abs(float(norm) - 0.25) < 1e-5


def test_real_inner_step_improves_live_return():
    adapter = make_adapter(rollouts_per_step=4, accept_window=4, rollback_margin=10.0,
                           divergence_margin=10.0, max_param_delta=10.0, seed=3)
    start = adapter.params['mean.bias'].numpy().copy()
    run(adapter, 10 * 4 * 8 + 1)
    assert adapter.stats['adaptations'] >= 5
    end = adapter.params['mean.bias'].numpy()
    assert np.linalg.norm(end - TARGET) < 0.6 * np.linalg.norm(start - TARGET)
    returns = [r for r, _ in adapter.episode_returns]
    assert np.mean(returns[-4:]) > np.mean(returns[:4]) + 0.1


def test_a_new_log_reason_passes_at_once_and_repeats_once_a_period():
    gate = RepeatGate(1.0)
    assert gate.allow('stale_state', 10.0)
    assert not gate.allow('stale_state', 10.5)          # the same reason: throttled
    assert gate.allow('bad_observation', 10.6)          # a new reason: at once
    assert not gate.allow('bad_observation', 10.7)
    assert gate.allow('stale_state', 11.0)              # a period after it last passed
    assert not gate.allow('stale_state', 11.9)
    assert gate.allow('bad_observation', 11.6)
    for k in range(300):               # many kinds, each passes once; the old are forgotten
        assert gate.allow(f'error {k}', 20.0 + k * 0.1)
        assert not gate.allow(f'error {k}', 20.0 + k * 0.1)
    assert len(gate._last) <= 101


def test_the_gate_counts_the_lines_it_holds_back_until_the_next_passes():
    gate = RepeatGate(1.0)
    assert gate.check('reward', 10.0) == 0               # new: at once, nothing held back
    assert [gate.check('reward', 10.0 + t) for t in (0.1, 0.5, 0.9)] == [None] * 3
    assert gate.check('other', 10.5) == 0                # another kind: its own count
    assert gate.check('reward', 11.0) == 3               # a period on: the 3 held back
    assert gate.check('reward', 11.2) is None
    assert gate.check('reward', 12.5) == 1
    assert gate.check('reward', 14.0) == 0               # nothing held back since
    assert not gate.allow('reward', 14.5) and gate.check('reward', 15.0) == 1


def test_repeated_reward_warnings_are_throttled_and_say_how_many_were_held_back():
    lines = []
    adapter = make_adapter(rollouts_per_step=1, log=lines.append)
    run(adapter, 30, reward=float('nan'))
    time.sleep(1.05)                   # a period after the last line: the next one passes
    run(adapter, 1, reward=float('nan'))
    rejected = adapter.stats['rejected_rewards']
    assert rejected >= 25
    first = 'reward nan is not finite or beyond reward_limit'
    assert lines[0].startswith(first) and lines[0].endswith('dropping the running episode')
    counts = [int(m.group(1)) if m else 0 for m in
              (re.search(r' \((\d+) more since the last warning\)$', line) for line in lines)]
    assert all(line.startswith(first) for line in lines) and counts[0] == 0
    assert 2 <= len(lines) < rejected              # 30 rejections in far less than 30 s
    assert len(lines) + sum(counts) == rejected    # each one logged or counted in a later line


def test_episode_signal_and_padded_episodes():
    adapter = make_adapter(rollouts_per_step=5, min_episode_steps=3)
    run(adapter, 5, reward=-1.0)                                 # 4 transitions
    adapter.act(state(), 0.0, reward=-1.0, episode_start=True)   # 5th closes, then ends
    run(adapter, 11, reward=-2.0)                                # a full 10-step episode
    assert [r for r, _ in adapter.episode_returns] == [-5.0, -20.0]
    batch = adapter.episodes_tensor(adapter._batch)
    assert tuple(batch.observations.shape) == (2, 10, 3)
    assert batch.mask.sum(-1).tolist() == [5.0, 10.0]
    assert torch.isfinite(batch.log_probs).all()


def test_accepted_parameters_are_persisted_and_resumed():
    saved = []
    adapter = make_adapter(lambda p, params, e, lr, **kw: shifted(params, TARGET),
                           persist_fn=lambda params, info: saved.append((params, info)),
                           rollouts_per_step=1, accept_window=1)
    run(adapter, 21)
    assert saved and saved[-1][1]['adaptations'] >= 1
    params = saved[-1][0]
    resumed = online.OnlineAdapter(adapter.policy, adapter.meta_params, adapter.spec,
                                   online.OnlineConfig(), initial_params=params)
    assert resumed.stats['resumed']
    for k in params:
        torch.testing.assert_close(resumed.params[k], params[k])


MODEL = online.resolve_checkpoint('reacher')


def online_returns(checkpoint, episodes, rollouts_per_step=4):
    """Adapt ``checkpoint`` online on the demo's held-out task; return the episode returns."""
    from maml_robot.commands.demo import pick_task
    from maml_robot.scenario import load_scenario
    from maml_robot.sim.world import World
    scenario = load_scenario('reacher')
    _, task = pick_task(scenario)
    config = online.OnlineConfig(synchronous=True, ramp_in_steps=0, fade_in_steps=0,
                                 rollouts_per_step=rollouts_per_step,
                                 accept_window=rollouts_per_step)
    adapter = online.load_adapter(checkpoint, config, seed=0, log=lambda m: None)
    world = World(scenario, task=task)
    try:
        returns = online.run_in_process(adapter, world, episodes, np.random.default_rng(0))
    finally:
        world.close()
    return [r for r, _ in returns], adapter.stats


def test_rehearsal_runs_whole_episodes_and_wants_a_generator():
    from maml_robot.scenario import load_scenario
    from maml_robot.sim.world import World
    scenario = load_scenario('reacher')
    config = online.OnlineConfig(synchronous=True, ramp_in_steps=0, fade_in_steps=0,
                                 rollouts_per_step=2)
    adapter = online.load_adapter(MODEL, config, seed=0, log=lambda m: None)
    world = World(scenario)
    try:
        with pytest.raises(ValueError, match='numpy Generator'):
            online.run_in_process(adapter, world, 1, rng=0)
        returns = online.run_in_process(adapter, world, 3, np.random.default_rng(0))
    finally:
        world.close()
    assert len(returns) == 3 and adapter.stats['episodes'] == 3
    assert [count for _, count in returns] == [0, 0, 1]    # one update after two episodes
    assert adapter.stats['adaptations'] == 1


def test_online_loop_on_held_out_dynamics_runs_end_to_end(tmp_path):
    from maml_robot.checkpoint import save_checkpoint
    from maml_robot.scenario import load_scenario
    path = tmp_path / 'fresh.safetensors'
    save_checkpoint(path, online.fresh_checkpoint(load_scenario('reacher'), seed=0))
    returns, stats = online_returns(path, episodes=6, rollouts_per_step=2)
    assert len(returns) >= 5 and all(np.isfinite(returns))
    assert stats['adaptations'] >= 1 and np.isfinite(stats['meta_return'])


@pytest.mark.slow
@pytest.mark.skipif(not MODEL.is_file(), reason='the shipped meta-policy is not there yet')
def test_shipped_meta_policy_improves_online_on_held_out_dynamics():
    # The inner step was meta-trained on 20 rollouts per task: adapt online with the same
    # batch, twice, and compare 20 episodes of the meta-policy with 20 after two updates.
    returns, stats = online_returns(MODEL, episodes=60, rollouts_per_step=20)
    assert stats['adaptations'] >= 2 and stats['rollbacks'] == 0, stats
    assert np.mean(returns[-20:]) > np.mean(returns[:20]) + 0.5, returns
