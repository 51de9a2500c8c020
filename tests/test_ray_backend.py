"""Ray backend: same episodes as the local pool, killed/failing/hung actors, a lost cluster."""

import argparse
import csv
import logging
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

from maml_robot.checkpoint import load_checkpoint
from maml_robot.meta.trainer import Trainer
from maml_robot.policy import expand_params, GaussianPolicy, PolicyConfig
from maml_robot.sampler import Sampler
from maml_robot.sampling import ProcessBackend, WorkerCrashed
from maml_robot.sampling.ray_backend import (add_backend_arguments, ClusterLost, import_ray,
                                             make_backend, RayBackend)
from maml_robot.sampling.standin import make_pendulum_task_env
from maml_robot.train_config import load_train_config
from maml_robot.train_state import load_train_state
import numpy as np
import pytest
import torch

TASKS = [{'g': 10.0, 'terminate_after': 5}, {'g': 6.0}, {'g': 13.0, 'm': 1.5}]
HORIZON = 12
# Ray on loopback only (its default is the machine's outward address), no token files
RAY_ENV = {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0', 'RAY_AUTH_MODE': 'disabled',
           'RAY_USAGE_STATS_ENABLED': '0'}
# central inference: these tests inject faults into the per-step calls (the reacher config's
# own default runs whole episodes in the workers; tested separately below)
TINY = {'tasks_per_iteration': 2, 'rollouts_per_task': 2, 'horizon': 8, 'workers': 2,
        'device': 'cpu', 'outer_steps': 2, 'hidden_sizes': (16,), 'checkpoint_every': 1,
        'inference': 'central'}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope='module')
def ray_cluster():
    """Start one local Ray instance (2 CPUs, loopback, no dashboard) for the module."""
    os.environ.update(RAY_ENV)  # read by Ray at import: before the first `import ray`
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address='127.0.0.1')
    yield ray
    ray.shutdown()


@pytest.fixture(scope='module')
def policy():
    return GaussianPolicy(PolicyConfig(obs_dim=3, act_dim=1, hidden_sizes=(8,)))


@pytest.fixture(scope='module')
def params_b(policy):
    return expand_params(policy.init_params(seed=0), len(TASKS))


@pytest.fixture(scope='module')
def local_episodes(policy, params_b):
    """Two calls of a local 2-worker sampler: the reference for the Ray backend."""
    with Sampler(env_factory=make_pendulum_task_env, num_workers=2, seed=7,
                 horizon=HORIZON) as sampler:
        return [sampler.sample(policy, params_b, TASKS, 2) for _ in range(2)]


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.as_tuple(), b.as_tuple()))


def _kill_on_send(backend, ray, number, worker=0):
    """Make ``backend`` ray.kill actor ``worker`` just before its ``number``-th step_send."""
    real = backend.step_send
    sends = {'n': 0}

    def send(*args, **kwargs):
        sends['n'] += 1
        if sends['n'] == number:
            ray.kill(backend.actors[worker], no_restart=True)
        return real(*args, **kwargs)

    backend.step_send = send


# ---------------------------------------------------------------------------- equivalence
def test_same_episodes_as_the_local_backend(ray_cluster, policy, params_b, local_episodes):
    with Sampler(env_factory=make_pendulum_task_env, seed=7, horizon=HORIZON,
                 backend=RayBackend(2)) as sampler:
        got = [sampler.sample(policy, params_b, TASKS, 2) for _ in range(2)]
        sampler.pipeline = False  # one group: same numbers for the envs, other noise order
        plain = sampler.sample(policy, params_b, TASKS, 2, seed=np.random.SeedSequence([7, 0]))
    assert got[0].observations.shape == (3, 2, HORIZON, 3)
    assert _equal(got[0], local_episodes[0]) and _equal(got[1], local_episodes[1])
    assert not _equal(got[0], got[1])  # the call counter moved the seeds on
    assert torch.equal(plain.mask, got[0].mask)  # task 0 still ends after 5 steps
    assert torch.equal(plain.observations[:, :, 0], got[0].observations[:, :, 0])  # resets


def test_workers_inference_same_episodes_as_local_and_survives_a_killed_actor(
        ray_cluster, policy, params_b, caplog):
    """inference='workers': one call per actor and wave; a kill during it is re-sampled."""
    with Sampler(env_factory=make_pendulum_task_env, num_workers=2, seed=7, horizon=HORIZON,
                 inference='workers') as sampler:
        local = sampler.sample(policy, params_b, TASKS, 2)
    backend = RayBackend(2)
    with Sampler(env_factory=make_pendulum_task_env, seed=7, horizon=HORIZON, backend=backend,
                 inference='workers') as sampler:
        assert _equal(sampler.sample(policy, params_b, TASKS, 2), local)
        real = backend._submit

        def submit(w, method, *args):  # kill actor 0 as its rollout is submitted (mid-call)
            if method == 'rollout' and w == 0 and backend.replacements == 0:
                actor = backend.actors[0]
                ray_cluster.kill(actor, no_restart=True)
                for _ in range(100):          # the kill is asynchronous: wait until it lands
                    try:
                        ray_cluster.get(actor.pid.remote(), timeout=5)
                    except ray_cluster.exceptions.RayActorError:
                        break
                    time.sleep(0.05)
            return real(w, method, *args)

        backend._submit = submit
        sampler.calls = 0
        with caplog.at_level(logging.WARNING, logger='maml_robot.sampler'):
            again = sampler.sample(policy, params_b, TASKS, 2)
        assert backend.replacements == 1 and 'actor died' in sampler.crash_reports[0].message
        assert _equal(again, local)


# ----------------------------------------------------------------------------- worker loss
def test_killed_actor_is_replaced_and_the_batch_resampled(ray_cluster, policy, params_b,
                                                          local_episodes, caplog):
    backend = RayBackend(2)
    with Sampler(env_factory=make_pendulum_task_env, seed=7, horizon=HORIZON,
                 backend=backend) as sampler:
        sampler.sample(policy, params_b, TASKS, 2)  # start the actors
        first = backend.actors[0]
        sampler.calls = 0
        _kill_on_send(backend, ray_cluster, 7)  # mid-rollout (two groups: step 4 of 12)
        with caplog.at_level(logging.WARNING, logger='maml_robot.sampler'):
            again = sampler.sample(policy, params_b, TASKS, 2)
        assert _equal(again, local_episodes[0])  # re-sampled with the same seeds
        assert backend.replacements == 1 and backend.actors[0] != first
        assert len(sampler.crash_reports) == 1
        report = sampler.crash_reports[0]
        assert report.worker == 0 and 'actor died' in report.message
        assert report.tasks[0] == TASKS[0]
        assert 're-sampling the batch' in caplog.text
        assert _equal(sampler.sample(policy, params_b, TASKS, 2), local_episodes[1])


def test_failing_and_hung_envs_name_their_task(ray_cluster, policy, tmp_path):
    backend = RayBackend(2, step_timeout=2.0)
    params = expand_params(policy.init_params(seed=0), 2)
    raising = {'g': 9.0, 'fault': 'raise', 'fault_step': 3,
               'fault_once_file': str(tmp_path / 'raised')}
    hanging = {'g': 8.0, 'fault': 'hang', 'fault_step': 2,
               'fault_once_file': str(tmp_path / 'hung')}
    with Sampler(env_factory=make_pendulum_task_env, seed=3, horizon=6,
                 backend=backend) as sampler:
        eps = sampler.sample(policy, params, [{'g': 10.0}, raising], 1)
        assert eps.mask.sum() == 2 * 6  # the retry completed both episodes
        (report,) = sampler.crash_reports
        assert report.worker == 1 and 'injected fault at step 3' in report.message
        assert 'in env 1' in report.message and "'fault': 'raise'" in report.message
        start = time.monotonic()
        sampler.sample(policy, params, [hanging, {'g': 10.0}], 1)
        # Without the step timeout this call never returns. The bound is generous because
        # replacing a Ray actor takes tens of seconds on a loaded 2-core machine.
        assert time.monotonic() - start < 120.0
        assert 'hung' in sampler.crash_reports[-1].message
        assert sampler.crash_reports[-1].worker == 0 and backend.replacements == 2
    with pytest.raises(WorkerCrashed, match='injected fault'):
        direct = RayBackend(1)
        try:
            direct.start(make_pendulum_task_env, 1)
            direct.set_tasks([{'fault': 'raise', 'fault_step': 1}])
            direct.reset([0])
            direct.step(np.zeros((1, 1), np.float32), np.ones(1, bool))
        finally:
            direct.close()


def test_more_workers_than_the_cluster_has_cpus_is_a_clear_error(ray_cluster):
    backend = RayBackend(3, start_timeout=2.0)  # 3 actors x 1 CPU on a 2-CPU cluster
    try:
        with pytest.raises(RuntimeError, match='could not place worker actor .*lower --workers'):
            backend.start(make_pendulum_task_env, 3)
    finally:
        backend.close()
    assert backend.num_envs == 0


def test_training_survives_a_killed_actor_and_matches_local_training(ray_cluster, tmp_path):
    config = load_train_config('reacher', overrides={**TINY, 'iterations': 2})
    local = Trainer(config, tmp_path / 'local', env_factory=make_pendulum_task_env,
                    progress=False)
    local.run()
    remote = Trainer(config, tmp_path / 'ray', env_factory=make_pendulum_task_env,
                     progress=False)
    assert isinstance(remote.sampler.backend, ProcessBackend)  # not started yet: swap it
    backend = remote.sampler.backend = RayBackend(config.workers)
    _kill_on_send(backend, ray_cluster, 20)  # iteration 0, second (post-update) sample
    remote.run()
    with open(tmp_path / 'ray' / 'progress.csv', newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[-1]['worker_crashes']) == 1
    a = load_checkpoint(tmp_path / 'local' / 'latest.safetensors')
    b = load_checkpoint(tmp_path / 'ray' / 'latest.safetensors')
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name


# ----------------------------------------------------------------------------- lost cluster
DRIVER = textwrap.dedent("""
    import os, signal, sys
    import torch
    from maml_robot.meta.trainer import Trainer
    from maml_robot.sampling.ray_backend import ClusterLost, RayBackend
    from maml_robot.sampling.standin import make_pendulum_task_env
    from maml_robot.train_config import load_train_config

    def main():
        torch.set_num_threads(1)
        port, head_group, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
        config = load_train_config('reacher', overrides={TINY!r} | {{'iterations': 3}})
        trainer = Trainer(config, out, env_factory=make_pendulum_task_env, progress=False)
        backend = trainer.sampler.backend = RayBackend(
            1, address=f'127.0.0.1:{{port}}', step_timeout=5.0, start_timeout=10.0,
            probe_timeout=5.0)
        real = backend.step_send

        def send(*args, **kwargs):  # in iteration 1: the head node and the actor go down
            if trainer.iteration == 1 and head_group:
                import ray
                pid = ray.get(backend.actors[0].pid.remote())
                os.killpg(head_group, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
                backend.step_send = real
            return real(*args, **kwargs)

        backend.step_send = send
        try:
            trainer.run()
        except ClusterLost as err:
            print('CLUSTER_LOST', err, flush=True)
            os._exit(3)  # Ray's own exit would wait for the dead head
        os._exit(0)

    if __name__ == '__main__':
        main()
""").format(TINY={**TINY, 'workers': 1})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_lost_cluster_stops_training_with_cluster_lost_and_a_saved_state(tmp_path):
    """A separate head (`ray start --head`), killed while a trainer runs on it."""
    ray_dir = tempfile.mkdtemp(prefix='rl', dir='/tmp')  # short: Ray's socket paths
    env = {**os.environ, **RAY_ENV, 'RAY_TMPDIR': ray_dir}
    port = _free_port()
    ray_cli = str(Path(sys.executable).with_name('ray'))
    head = subprocess.Popen(
        [ray_cli, 'start', '--head', '--block', f'--port={port}', '--num-cpus=1',
         '--include-dashboard=false', '--disable-usage-stats', f'--temp-dir={ray_dir}'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        for line in head.stdout:  # wait until the head is up
            if 'Ray runtime started' in line:
                break
        else:
            pytest.fail('ray start --head exited before the runtime started')
        script = tmp_path / 'driver.py'
        script.write_text(DRIVER)
        out = tmp_path / 'run'
        driver = subprocess.run([sys.executable, str(script), str(port), str(head.pid),
                                 str(out)], env=env, capture_output=True, text=True,
                                timeout=150)
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert driver.returncode == 3, driver.stdout[-3000:] + driver.stderr[-3000:]
    assert 'CLUSTER_LOST' in driver.stdout and '--resume' in driver.stdout
    _, info = load_train_state(out / 'resume.safetensors')
    assert info['iteration'] == 1  # the completed iteration was saved before exiting
    assert load_checkpoint(out / 'latest.safetensors').training['iterations'] == 1


def test_shut_down_ray_raises_cluster_lost(policy):
    """Last in the module: Ray shut down under a running backend (the driver disconnected)."""
    os.environ.update(RAY_ENV)
    ray = import_ray()
    backend = RayBackend(1, init_kwargs={'num_cpus': 1, 'log_to_driver': False,
                                         '_node_ip_address': '127.0.0.1'})
    try:
        backend.start(make_pendulum_task_env, 2)
        backend.set_tasks([{'g': 10.0}] * 2)
        backend.reset([1, 2])
        ray.shutdown()
        with pytest.raises(ClusterLost, match='shut down'):
            backend.step(np.zeros((2, 1), np.float32), np.ones(2, bool))
    finally:
        backend.close()
    assert not ray.is_initialized()


# ------------------------------------------------------------------------------ the choice
def test_make_backend_and_flags():
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(['--backend', 'ray', '--ray-address', 'auto'])
    assert (args.backend, args.ray_address) == ('ray', 'auto')
    assert parser.parse_args([]).backend == 'local'
    backend = make_backend(args.backend, 3, ray_address=args.ray_address, step_timeout=7.0)
    assert isinstance(backend, RayBackend) and backend.address == 'auto'
    assert backend.num_workers == 3 and backend.step_timeout == 7.0
    assert isinstance(make_backend('local', 2), ProcessBackend)
    with pytest.raises(ValueError, match='--ray-address needs --backend ray'):
        make_backend('local', 2, ray_address='auto')
    with pytest.raises(ValueError, match="one of \\('local', 'ray'\\)"):
        make_backend('dask', 2)
    with pytest.raises(ValueError, match='num_workers'):
        RayBackend(0)


def test_local_backend_needs_no_ray_and_missing_ray_says_how_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules['ray'] = None  # as if Ray were not installed
        from maml_robot.sampling.ray_backend import make_backend
        from maml_robot.sampling.local import ProcessBackend
        assert isinstance(make_backend('local', 2), ProcessBackend)
        try:
            make_backend('ray', 2)
        except ImportError as err:
            print(err)
    """)
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'maml_robot[ray]'" in done.stdout
