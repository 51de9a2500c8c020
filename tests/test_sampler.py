"""Sampler and worker pool: shapes, masks, determinism, crashes, timeouts (Pendulum stand-in)."""

from maml_robot.policy import expand_params, GaussianPolicy, PolicyConfig, stack_params
from maml_robot.sampler import resolve_device, Sampler, SamplerError
from maml_robot.sampling import ProcessBackend, WorkerCrashed
from maml_robot.sampling.standin import make_pendulum_task_env
import numpy as np
import pytest
import torch

TASKS = [{'g': 10.0, 'terminate_after': 5}, {'g': 6.0}, {'g': 13.0, 'm': 1.5}]
HORIZON = 12


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope='module')
def policy():
    return GaussianPolicy(PolicyConfig(obs_dim=3, act_dim=1, hidden_sizes=(8,)))


@pytest.fixture(scope='module')
def params(policy):
    return policy.init_params(seed=0)


@pytest.fixture(scope='module')
def sampler():
    with Sampler(env_factory=make_pendulum_task_env, num_workers=2, seed=7,
                 horizon=HORIZON) as s:
        yield s


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.as_tuple(), b.as_tuple()))


@pytest.mark.parametrize('pipeline', [True, False])
def test_shapes_masks_and_log_probs(sampler, policy, params, pipeline):
    sampler.pipeline = pipeline
    try:
        eps = sampler.sample(policy, expand_params(params, 3), TASKS, 2)
    finally:
        sampler.pipeline = False
    assert eps.observations.shape == (3, 2, HORIZON, 3)
    assert eps.actions.shape == (3, 2, HORIZON, 1)
    for name in ('rewards', 'mask', 'log_probs'):
        assert getattr(eps, name).shape == (3, 2, HORIZON)
    # task 0 terminates after 5 steps: those 5 steps are valid, the rest masked and zeroed
    assert torch.equal(eps.mask[0], torch.tensor([[1.0] * 5 + [0.0] * 7] * 2))
    assert torch.all(eps.mask[1:] == 1.0)
    assert torch.all(eps.rewards[0, :, 5:] == 0.0)
    assert torch.all(eps.rewards[1:] < 0.0)  # Pendulum rewards are negative
    # log_probs are those of the sampling policy for the stored (unclipped) actions
    recomputed = policy.batched_log_prob(expand_params(params, 3), eps.observations,
                                         eps.actions)
    assert torch.allclose(recomputed, eps.log_probs, atol=1e-5)
    # observation t+1 is the env's answer to action t: the pendulum state moved
    assert not torch.equal(eps.observations[1, :, 0], eps.observations[1, :, 1])


def test_per_task_params_are_used(sampler, policy, params):
    """Task 1 gets a policy with a large positive bias: its actions differ from task 0's."""
    shifted = {k: v.clone() for k, v in params.items()}
    shifted['mean.bias'] += 5.0
    shifted['log_std'] -= 5.0
    params_b = stack_params([params, shifted, params])
    eps = sampler.sample(policy, params_b, [{'g': 10.0}] * 3, 2)
    assert torch.all((eps.actions[1] - 5.0).abs() < 0.2)
    assert torch.all(eps.actions[0].abs() < 4.0)


def test_same_seed_same_episodes(sampler, policy, params):
    params_b = expand_params(params, 3)
    seed = np.random.SeedSequence([7, 0])
    first = sampler.sample(policy, params_b, TASKS, 2, seed=seed)
    again = sampler.sample(policy, params_b, TASKS, 2, seed=np.random.SeedSequence([7, 0]))
    assert _equal(first, again)
    other = sampler.sample(policy, params_b, TASKS, 2, seed=np.random.SeedSequence([7, 1]))
    assert not torch.equal(first.observations, other.observations)
    # rollouts of one task start from different seeded states
    assert not torch.equal(first.observations[1, 0, 0], first.observations[1, 1, 0])


@pytest.mark.parametrize('pipeline', [False, True])
def test_counter_seeds_reproduce_across_samplers(policy, params, pipeline):
    params_b = expand_params(params, 2)
    runs = []
    for workers in (1, 2):  # the worker count must not change the episodes (either mode)
        with Sampler(env_factory=make_pendulum_task_env, num_workers=workers, seed=3,
                     horizon=6, pipeline=pipeline) as s:
            runs.append([s.sample(policy, params_b, TASKS[1:], 3) for _ in range(2)])
            assert s.calls == 2
            assert s.env_steps == 2 * 2 * 3 * 6
    assert _equal(runs[0][0], runs[1][0]) and _equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0].observations, runs[0][1].observations)


def test_crashed_worker_is_reported_replaced_and_batch_resampled(sampler, policy, params,
                                                                 tmp_path, caplog):
    seed = np.random.SeedSequence([7, 42])
    params_b = expand_params(params, 3)
    clean = sampler.sample(policy, params_b, TASKS, 2, seed=seed)
    bad = dict(TASKS[2], fault='exit', fault_step=3, fault_once_file=str(tmp_path / 'fired'))
    before = len(sampler.crash_reports)
    eps = sampler.sample(policy, params_b, TASKS[:2] + [bad], 2, seed=seed)
    assert _equal(eps, clean)  # the re-sampled batch is the batch a healthy pool gives
    report = sampler.crash_reports[before]
    assert len(sampler.crash_reports) == before + 1
    assert report.worker == 1 and bad in report.tasks
    assert 'exited with code 3' in report.message
    assert 'worker 1' in caplog.text and 're-sampling' in caplog.text


def test_task_that_always_fails_raises_clear_error(sampler, policy, params):
    bad = {'g': 9.0, 'fault': 'raise', 'fault_step': 2}
    sampler.max_retries = 1
    try:
        with pytest.raises(SamplerError) as info:
            sampler.sample(policy, expand_params(params, 3), [TASKS[1], TASKS[2], bad], 2)
    finally:
        sampler.max_retries = 2
    text = str(info.value)
    assert 'failed 2 times' in text and 'injected fault at step 2' in text
    assert "'fault': 'raise'" in text  # names the task
    # the pool was healed: the next batch samples fine
    eps = sampler.sample(policy, expand_params(params, 3), TASKS, 2)
    assert eps.rewards.shape == (3, 2, HORIZON)


def test_hung_worker_times_out(policy, params):
    backend = ProcessBackend(2, step_timeout=1.5)
    with Sampler(env_factory=make_pendulum_task_env, horizon=5, backend=backend,
                 max_retries=0) as s:
        hang = {'g': 9.0, 'fault': 'hang', 'fault_step': 2}
        with pytest.raises(SamplerError) as info:
            s.sample(policy, expand_params(params, 2), [TASKS[1], hang], 1)
        assert 'no reply within 1.5 s' in str(info.value)
        assert s.crash_reports[0].worker == 1


def test_backend_reports_worker_and_task(params):
    backend = ProcessBackend(1, step_timeout=5.0)
    try:
        backend.start(make_pendulum_task_env, 2)
        backend.set_tasks([{'g': 10.0}, {'g': 8.0, 'fault': 'raise', 'fault_step': 1}])
        backend.reset([0, 1])
        with pytest.raises(WorkerCrashed) as info:
            backend.step(np.zeros((2, 1), np.float32), np.ones(2, bool))
        failure = info.value.failures[0]
        assert failure.worker == 0 and failure.env_ids == (0, 1)
        assert 'in env 1' in failure.message and 'RuntimeError' in failure.message
        # replaced: a healthy task steps again on the same pool
        backend.set_tasks([{'g': 10.0}, {'g': 8.0}])
        obs = backend.reset([0, 1]).copy()
        result = backend.step(np.zeros((2, 1), np.float32), np.array([True, False]))
        assert not np.array_equal(result.observations[0], obs[0])
        assert np.array_equal(result.observations[1], obs[1]) and result.rewards[1] == 0.0
    finally:
        backend.close()


def test_bad_arguments(policy, params):
    with pytest.raises(ValueError, match='fork'):
        ProcessBackend(1, start_method='fork')
    with pytest.raises(ValueError, match='horizon'):
        Sampler(env_factory=make_pendulum_task_env)
    with pytest.raises(ValueError, match="device must be 'auto'"):
        resolve_device('tpu')
    expected = 'cuda' if torch.cuda.is_available() else 'cpu'
    assert resolve_device('auto').type == expected
    with Sampler(env_factory=make_pendulum_task_env, horizon=3) as s:
        with pytest.raises(ValueError, match='number of tasks'):
            s.sample(policy, expand_params(params, 2), TASKS, 1)
        wrong = GaussianPolicy(PolicyConfig(obs_dim=5, act_dim=1))
        with pytest.raises(ValueError, match='obs_dim=5'):
            s.sample(wrong, expand_params(wrong.init_params(0), 1), TASKS[:1], 1)


def test_waves_bound_the_number_of_envs(sampler, policy, params):
    """max_envs=4 with N=2 runs 3 tasks in two waves on a pool of 4 envs."""
    seed = np.random.SeedSequence([7, 5])
    full = sampler.sample(policy, expand_params(params, 3), TASKS, 2, seed=seed)
    with Sampler(env_factory=make_pendulum_task_env, num_workers=2, seed=7, horizon=HORIZON,
                 max_envs=4) as small:
        waves = small.sample(policy, expand_params(params, 3), TASKS, 2,
                             seed=np.random.SeedSequence([7, 5]))
        assert small.backend.num_envs == 4
    assert waves.rewards.shape == full.rewards.shape == (3, 2, HORIZON)
    assert torch.equal(waves.mask, full.mask)
    # each episode's reset seed is the same whatever the wave: same first observations
    assert torch.equal(waves.observations[:, :, 0], full.observations[:, :, 0])
    assert torch.all(waves.rewards[1:] < 0.0) and torch.all(waves.rewards[0, :, 5:] == 0.0)
