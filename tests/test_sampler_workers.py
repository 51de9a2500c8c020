"""Sampler with inference='workers': whole episodes inside the workers (Pendulum stand-in)."""

from dataclasses import replace

from maml_robot.policy import expand_params, GaussianPolicy, PolicyConfig, stack_params
from maml_robot.sampler import Sampler, SamplerError
from maml_robot.sampling import ProcessBackend, WorkerCrashed
from maml_robot.sampling.rollout import RolloutJob, run_job
from maml_robot.sampling.standin import make_pendulum_task_env
import numpy as np
import pytest
import torch

TASKS = [{'g': 10.0, 'terminate_after': 5}, {'g': 6.0}, {'g': 13.0, 'm': 1.5}]
HORIZON = 12


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def make_policy(activation='tanh', log_std=0.0):
    policy = GaussianPolicy(PolicyConfig(obs_dim=3, act_dim=1, hidden_sizes=(8, 8),
                                         activation=activation, init_log_std=log_std))
    # a normalization that matters: the numpy copy must apply it exactly as torch does
    policy.set_normalization(torch.tensor([0.5, -0.2, 0.1]), torch.tensor([0.7, 0.9, 2.0]))
    return policy


def per_task_params(policy):
    params = [policy.init_params(seed=s) for s in range(3)]
    params[1]['mean.bias'] += 1.0
    return stack_params(params)


def sample(policy, params_b, workers=2, max_envs=64, inference='workers', seed=7, n=2,
           tasks=TASKS, **kw):
    with Sampler(env_factory=make_pendulum_task_env, num_workers=workers, seed=seed,
                 horizon=HORIZON, max_envs=max_envs, inference=inference, **kw) as s:
        eps = s.sample(policy, params_b, tasks, n)
        return eps, s


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.as_tuple(), b.as_tuple()))


def test_shapes_masks_log_probs_and_env_steps():
    policy = make_policy()
    params_b = per_task_params(policy)
    eps, s = sample(policy, params_b)
    assert eps.observations.shape == (3, 2, HORIZON, 3) and eps.actions.shape == (3, 2, HORIZON, 1)
    # task 0 terminates after 5 steps: 5 valid steps, then masked, zero rewards and log-probs
    assert torch.equal(eps.mask[0], torch.tensor([[1.0] * 5 + [0.0] * 7] * 2))
    assert torch.all(eps.mask[1:] == 1.0)
    assert torch.all(eps.rewards[0, :, 5:] == 0.0) and torch.all(eps.log_probs[0, :, 5:] == 0)
    assert torch.all(eps.rewards[1:] < 0.0)
    recomputed = policy.batched_log_prob(params_b, eps.observations, eps.actions) * eps.mask
    assert torch.allclose(recomputed, eps.log_probs, atol=1e-6)
    assert s.env_steps == 2 * 5 + 2 * 2 * HORIZON
    # observation t+1 answers action t
    assert not torch.equal(eps.observations[1, :, 0], eps.observations[1, :, 1])


def test_episodes_do_not_depend_on_workers_waves_or_calls():
    """Same seed: bit-identical episodes for 1, 2 or 3 workers and any max_envs."""
    policy = make_policy()
    params_b = per_task_params(policy)
    ref, _ = sample(policy, params_b, workers=1)
    for workers, max_envs in ((2, 64), (3, 64), (2, 2), (3, 4)):
        got, _ = sample(policy, params_b, workers=workers, max_envs=max_envs)
        assert _equal(got, ref), (workers, max_envs)
    other, _ = sample(policy, params_b, seed=8)
    assert not torch.equal(other.observations, ref.observations)
    # two rollouts of a task: different reset states and different noise
    assert not torch.equal(ref.observations[1, 0, 0], ref.observations[1, 1, 0])


@pytest.mark.parametrize('activation', ['tanh', 'relu', 'elu'])
def test_numpy_policy_acts_like_the_torch_policy(activation):
    """Without exploration noise both modes must drive the envs through the same states."""
    policy = make_policy(activation, log_std=-14.0)
    params_b = per_task_params(policy)
    central, _ = sample(policy, params_b, inference='central')
    workers, _ = sample(policy, params_b, inference='workers')
    assert torch.equal(central.mask, workers.mask)
    valid = central.mask.bool()   # (central leaves stale values after an episode ended)
    assert torch.allclose(central.observations[valid], workers.observations[valid], atol=1e-4)
    assert torch.allclose(central.actions[valid], workers.actions[valid], atol=1e-4)
    # per-task parameters are used: task 1's bias moved its actions
    same = expand_params({k: v[0] for k, v in params_b.items()}, 3)
    shared, _ = sample(policy, same)
    assert not torch.allclose(shared.actions[1], workers.actions[1], atol=1e-2)
    # shared parameters: every task's every step acts on ITS OWN observation (a bug once fed
    # all tasks the last task's observations: one policy row, so one batch for all of them)
    mean = policy.mean_action({k: v[0] for k, v in params_b.items()}, shared.observations)
    valid = shared.mask.bool()
    assert torch.allclose(shared.actions[valid], mean[valid], atol=1e-5)


def test_crashed_worker_is_replaced_and_the_wave_resampled(tmp_path):
    policy = make_policy()
    params_b = per_task_params(policy)
    clean, _ = sample(policy, params_b)
    bad = dict(TASKS[2], fault='exit', fault_step=3, fault_once_file=str(tmp_path / 'fired'))
    eps, s = sample(policy, params_b, tasks=TASKS[:2] + [bad])
    assert len(s.crash_reports) == 1 and 'exited with code 3' in s.crash_reports[0].message
    assert bad in s.crash_reports[0].tasks
    assert torch.equal(eps.observations, clean.observations)  # what a healthy pool gives


def test_failing_and_hung_tasks_raise_clear_errors():
    policy = make_policy()
    params_b = per_task_params(policy)
    bad = {'g': 9.0, 'fault': 'raise', 'fault_step': 2}
    with pytest.raises(SamplerError, match='injected fault at step 2'):
        sample(policy, params_b, tasks=TASKS[:2] + [bad], max_retries=0)
    hang = {'g': 9.0, 'fault': 'hang', 'fault_step': 2}
    with pytest.raises(SamplerError, match='no reply within'):
        sample(policy, expand_params(policy.init_params(0), 2), tasks=[TASKS[1], hang], n=1,
               max_retries=0, backend=ProcessBackend(2, step_timeout=1.0))


def test_bad_inference_name_is_refused():
    with pytest.raises(ValueError, match='inference must be one of'):
        Sampler(env_factory=make_pendulum_task_env, horizon=3, inference='gpu')
    backend = ProcessBackend(1)
    try:
        backend.start(make_pendulum_task_env, 2)
        job = RolloutJob(params={}, obs_mean=np.zeros(3), obs_std=np.ones(3), obs_clip=0.0,
                         activation='tanh', num_hidden=0, horizon=2,
                         task_index=np.zeros(3, int), seeds=np.arange(3),
                         slot=np.arange(3), slots=3)
        with pytest.raises(ValueError, match='needs 3 environments; the pool has 2'):
            backend.rollout(job)
    finally:
        backend.close()


@pytest.mark.parametrize('activation', ['tanh', 'relu', 'elu'])
def test_numpy_forward_matches_the_torch_forward(activation):
    """mean_actions (numpy, in the workers) == GaussianPolicy.mean_action, clip included."""
    from maml_robot.sampling.rollout import mean_actions
    policy = make_policy(activation)
    params_b = per_task_params(policy)
    obs = torch.randn(7, 3) * 20.0              # large values: the obs clip must bite
    job = RolloutJob(params={k: v.numpy() for k, v in params_b.items()},
                     obs_mean=policy.obs_mean.numpy(), obs_std=policy.obs_std.numpy(),
                     obs_clip=policy.config.obs_clip, activation=activation, num_hidden=2,
                     horizon=1, task_index=np.zeros(7, int), seeds=np.arange(7),
                     slot=np.arange(7), slots=7)
    for b in range(3):
        expected = policy.mean_action({k: v[b] for k, v in params_b.items()}, obs)
        got = mean_actions(job, b, obs.numpy())
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5)


def _job(policy, params_b, tasks, n=2):
    params = {k: v.detach().numpy() for k, v in params_b.items()}
    return RolloutJob(params=params, obs_mean=policy.obs_mean.numpy(),
                      obs_std=policy.obs_std.numpy(), obs_clip=policy.config.obs_clip,
                      activation='tanh', num_hidden=2, horizon=HORIZON,
                      task_index=np.repeat(np.arange(len(tasks)), n),
                      seeds=np.arange(len(tasks) * n) + 100,
                      slot=np.tile(np.arange(n), len(tasks)), slots=n,
                      tasks=tuple(t for t in tasks for _ in range(n)))


def test_a_job_with_tasks_runs_in_batches_and_names_the_failing_task():
    """More episodes than envs: the workers retask their envs batch by batch, no round trip."""
    policy = make_policy()
    params_b = per_task_params(policy)
    job = _job(policy, params_b, TASKS)
    envs = [make_pendulum_task_env() for _ in range(6)]   # one env per episode, in-process
    low, high = envs[0].action_space.low, envs[0].action_space.high
    ref = run_job(envs, job, low, high)
    assert ref['log_probs'][0, 5:].tolist() == [0.0] * (HORIZON - 5)  # task 0 ended at step 5
    backend = ProcessBackend(2)
    try:
        backend.start(make_pendulum_task_env, 2)          # 6 episodes on 2 envs: 3 batches each
        got = backend.rollout(job)
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
        bad = {'g': 9.0, 'fault': 'raise', 'fault_step': 2}
        with pytest.raises(WorkerCrashed) as crash:
            backend.rollout(_job(policy, params_b, [TASKS[1], TASKS[2], bad]))
        failure, = crash.value.failures
        assert failure.worker == 1 and bad in failure.tasks and TASKS[1] not in failure.tasks
        assert f'(task {bad!r})' in failure.message
        assert 'injected fault at step 2' in failure.message
        again = backend.rollout(job)                      # the replaced worker serves again
        np.testing.assert_array_equal(again['observations'], ref['observations'])
    finally:
        backend.close()
    with pytest.raises(ValueError, match='give the job its tasks'):
        run_job(envs[:2], replace(job, tasks=None), low, high)


def test_mean_action_policy_has_no_noise_in_the_workers():
    """A deterministic policy (MeanActionPolicy) acts with its mean action in either mode."""
    from maml_robot.meta.operators import MeanActionPolicy
    policy = make_policy(log_std=0.5)
    params_b = per_task_params(policy)
    actor = MeanActionPolicy(policy)
    eps, _ = sample(actor, params_b)
    means = policy.batched_mean_action(params_b, eps.observations)    # (B, N, T, act_dim)
    valid = eps.mask.bool()
    assert torch.allclose(eps.actions[valid], means[valid], atol=1e-5)
    assert torch.all(eps.log_probs == 0.0)
    central, _ = sample(actor, params_b, inference='central')
    assert torch.allclose(central.rewards, eps.rewards, atol=1e-4)   # same episodes, no noise
    noisy, _ = sample(policy, params_b)                               # the Gaussian policy
    assert not torch.allclose(noisy.actions[valid], means[valid], atol=1e-2)
