"""
Issue 18.13: a lost Ray cluster stops training with ClusterLost and the last iteration saved.

Errors are injected at the Ray call boundary (``ray.get``/``ray.wait`` of the backend) with the
exception types Ray really raises when the head, its GCS or the driver's raylet goes away; a
real local Ray instance runs the actors. The real 2-node cluster cases (head and GCS killed,
a driver without ``RAY_AUTH_MODE``) are in benchmarks/fault_suite.py (section 'Ray cluster').
"""

import argparse
import logging
import os
import socket
import time

from maml_robot.checkpoint import load_checkpoint
from maml_robot.meta.trainer import Trainer
from maml_robot.sampling import ray_backend
from maml_robot.sampling.backend_choice import add_backend_arguments, make_backend
from maml_robot.sampling.ray_backend import ClusterLost, import_ray, RayBackend
from maml_robot.sampling.ray_cluster import ClusterWatch, explain_connect_error
from maml_robot.sampling.standin import make_pendulum_task_env
from maml_robot.train_config import load_train_config
from maml_robot.train_state import load_train_state
import pytest
import torch

RAY_ENV = {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0', 'RAY_AUTH_MODE': 'disabled',
           'RAY_USAGE_STATS_ENABLED': '0'}
TINY = {'tasks_per_iteration': 2, 'rollouts_per_task': 2, 'horizon': 8, 'workers': 2,
        'device': 'cpu', 'outer_steps': 2, 'hidden_sizes': (16,), 'checkpoint_every': 10,
        'inference': 'central', 'iterations': 4}
LOST_AT = 2
"""The fault hits the first Ray call of this iteration: 2 completed, none of them saved yet."""


@pytest.fixture(scope='module')
def ray_cluster():
    """Start one local Ray instance (2 CPUs, loopback, no dashboard) for the module."""
    os.environ.update(RAY_ENV)
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address='127.0.0.1')
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class FaultyRay:
    """The ray module, except that ``get``/``wait`` raise a fault once ``armed()`` says so."""

    def __init__(self, ray, armed, get=None, wait=None):
        self._ray, self._armed, self._faults = ray, armed, {'get': get, 'wait': wait}
        self.hits = 0

    def __getattr__(self, name):
        return getattr(self._ray, name)

    def _call(self, name, *args, **kwargs):
        fault = self._faults[name]
        if isinstance(fault, self._ray.exceptions.GetTimeoutError) and kwargs.get(
                'timeout') is None:
            fault = None  # Ray raises it only for a get with a timeout
        if fault is not None and self._armed():
            self.hits += 1
            raise fault
        return getattr(self._ray, name)(*args, **kwargs)

    def get(self, *args, **kwargs):
        return self._call('get', *args, **kwargs)

    def wait(self, *args, **kwargs):
        return self._call('wait', *args, **kwargs)


def _trainer(out, backend=None, resume=False, **extra):
    config = load_train_config('reacher', overrides={**TINY, **extra})
    trainer = Trainer(config, out, env_factory=make_pendulum_task_env, progress=False,
                      resume=resume)
    if backend is not None:
        trainer.sampler.backend = backend
    return trainer


def _inject(monkeypatch, ray, trainer, **faults):
    """
    Make the backend of ``trainer`` see ``faults`` from iteration LOST_AT on.

    Returns the FaultyRay; its ``actors`` are the actor handles alive when the faults began
    (a backend that lost its cluster leaves them to die with the driver: the test kills them).
    """
    actors = {}

    def armed():
        if trainer.iteration < LOST_AT:
            return False
        actors.update((id(a), a) for a in trainer.sampler.backend.actors)
        return True

    faulty = FaultyRay(ray, armed, **faults)
    faulty.actors = actors
    monkeypatch.setattr(ray_backend, 'import_ray', lambda: faulty)
    return faulty


def _kill_all(ray, actors):
    for actor in list(actors.values()) if isinstance(actors, dict) else actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: B902 - already gone
            pass


def _params(path):
    return load_checkpoint(path).params


BROKEN_PIPE = OSError('Broken pipe')
"""What ray.wait raised in the tester's run when the head died: Ray's ``check_status`` turns an
IO status of its core worker into ``IOError(message)``, a plain OSError (no ConnectionError)."""
REAL_FAULTS = {
    # what Ray 2.60 raised in the tester's runs, and what its API documents for a lost cluster
    'broken pipe (head killed)': {'get': BROKEN_PIPE, 'wait': BROKEN_PIPE},
    'slow reply, then broken pipe in ray.wait': {'get': 'GetTimeoutError', 'wait': BROKEN_PIPE},
    'connection reset': {'get': ConnectionResetError(104, 'Connection reset by peer'),
                         'wait': ConnectionResetError(104, 'Connection reset by peer')},
    'RaySystemError': {'get': 'RaySystemError', 'wait': 'RaySystemError'},
    'RpcError (GCS unreachable)': {'get': 'RpcError', 'wait': 'RpcError'},
    'local raylet died': {'get': 'LocalRayletDiedError', 'wait': 'LocalRayletDiedError'},
}


def _real(ray, fault):
    """Return the exception ``fault`` names (a Ray exception class name) or ``fault`` itself."""
    if not isinstance(fault, str):
        return fault
    cls = getattr(ray.exceptions, fault)
    if fault == 'LocalRayletDiedError':
        return cls()
    if fault == 'RaySystemError':
        return cls('System error: Failed to connect to the raylet')
    return cls('failed to reach the GCS at 127.0.0.1:6379')


@pytest.mark.parametrize('case', list(REAL_FAULTS))
def test_lost_cluster_saves_the_last_iteration_and_stops_with_cluster_lost(
        ray_cluster, tmp_path, monkeypatch, case):
    trainer = _trainer(tmp_path / 'run', RayBackend(2, num_cpus_per_worker=0))
    faults = {k: _real(ray_cluster, v) for k, v in REAL_FAULTS[case].items()}
    faulty = _inject(monkeypatch, ray_cluster, trainer, **faults)
    started = time.monotonic()
    try:
        with pytest.raises(ClusterLost, match='--resume'):
            trainer.run()
    finally:
        _kill_all(ray_cluster, faulty.actors)
    assert faulty.hits >= 1 and time.monotonic() - started < 60
    _, info = load_train_state(tmp_path / 'run' / 'resume.safetensors')
    assert info['iteration'] == LOST_AT  # before the fix: no file (the regular save is at 10)
    assert load_checkpoint(tmp_path / 'run' / 'latest.safetensors').training['iterations'] == 2


def test_resume_after_a_lost_cluster_equals_an_uninterrupted_run(ray_cluster, tmp_path,
                                                                 monkeypatch):
    reference = _trainer(tmp_path / 'reference')
    reference.run()
    trainer = _trainer(tmp_path / 'run', RayBackend(2, num_cpus_per_worker=0))
    faulty = _inject(monkeypatch, ray_cluster, trainer, wait=BROKEN_PIPE, get=BROKEN_PIPE)
    try:
        with pytest.raises(ClusterLost):
            trainer.run()
    finally:
        _kill_all(ray_cluster, faulty.actors)
    monkeypatch.undo()
    again = _trainer(tmp_path / 'run', RayBackend(2, num_cpus_per_worker=0), resume=True)
    assert again.iteration == LOST_AT
    again.run()
    want, got = _params(tmp_path / 'reference' / 'latest.safetensors'), _params(
        tmp_path / 'run' / 'latest.safetensors')
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_any_other_error_still_saves_the_last_iteration(ray_cluster, tmp_path, monkeypatch):
    """An error that is no sign of a lost cluster passes through unchanged, after the save."""
    trainer = _trainer(tmp_path / 'run', RayBackend(2, num_cpus_per_worker=0))
    faulty = _inject(monkeypatch, ray_cluster, trainer,
                     get=ValueError('ray.get: an unexpected object ref'))
    try:
        with pytest.raises(ValueError, match='unexpected object ref'):
            trainer.run()
    finally:
        _kill_all(ray_cluster, faulty.actors)
    _, info = load_train_state(tmp_path / 'run' / 'resume.safetensors')
    assert info['iteration'] == LOST_AT  # before the fix: only SamplerError was saved


def test_a_slow_reply_is_not_a_lost_cluster(ray_cluster, tmp_path, monkeypatch):
    """Ray's GetTimeoutError is an OSError too: a timed-out fast path must only wait longer."""
    trainer = _trainer(tmp_path / 'run', RayBackend(2, num_cpus_per_worker=0), iterations=3)
    timeout = ray_cluster.exceptions.GetTimeoutError('Get timed out: some object(s) not ready')
    faulty = _inject(monkeypatch, ray_cluster, trainer, get=timeout)
    trainer.run()  # every fast-path ray.get times out from iteration 2 on; nothing is lost
    assert faulty.hits > 0 and trainer.iteration == 3
    assert trainer.sampler.backend.replacements == 0


def test_replacement_wait_is_logged_and_bounded_by_the_start_timeout(ray_cluster, tmp_path,
                                                                     caplog, monkeypatch):
    """A node lost with no spare CPU: the replacement cannot be placed; progress is logged."""
    monkeypatch.setattr(ray_backend, 'LOG_EVERY', 1.0)
    backend = RayBackend(2, start_timeout=60.0)  # 2 actors x 1 CPU: the cluster is full
    trainer = _trainer(tmp_path / 'run', backend)
    blocker = ray_cluster.remote(num_cpus=1)(lambda: time.sleep(120)).remote
    hold = []
    real = backend.step_send

    def send(*args, **kwargs):  # in iteration 2: actor 0 dies and its CPU is taken
        if trainer.iteration == LOST_AT and not hold:
            backend.start_timeout = 4.0  # as with --worker-start-timeout 4
            ray_cluster.kill(backend.actors[0], no_restart=True)
            hold.append(blocker())
            ray_cluster.wait(hold, timeout=3)  # placed: the freed CPU is taken
        return real(*args, **kwargs)

    backend.step_send = send
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger='maml_robot.sampling.ray_backend'):
            with pytest.raises(ClusterLost, match='nodes were lost.*--resume'):
                trainer.run()
    finally:
        for ref in hold:
            ray_cluster.cancel(ref, force=True)
        _kill_all(ray_cluster, backend._actors)
    waits = [r.getMessage() for r in caplog.records if 'waiting for a replacement' in
             r.getMessage()]
    assert len(waits) >= 2, caplog.text  # before the fix: silence until the timeout
    assert '[0]' in waits[0] and 'of 4 s' in waits[0]
    assert time.monotonic() - started < 60
    _, info = load_train_state(tmp_path / 'run' / 'resume.safetensors')
    assert info['iteration'] == LOST_AT


def test_worker_start_timeout_flag_reaches_both_backends():
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    args = parser.parse_args(['--backend', 'ray', '--worker-start-timeout', '7.5'])
    assert args.worker_start_timeout == 7.5
    assert parser.parse_args([]).worker_start_timeout == 120.0
    ray = make_backend('ray', 2, start_timeout=args.worker_start_timeout)
    assert ray.start_timeout == 7.5
    assert make_backend('local', 2, start_timeout=3.0).start_timeout == 3.0
    for bad in ('0', '-1', 'nan', 'soon'):
        with pytest.raises(SystemExit):
            parser.parse_args(['--worker-start-timeout', bad])


# ----------------------------------------------------------------- the head watch, connecting
def _listener():
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    return server, f'127.0.0.1:{server.getsockname()[1]}'


def test_watch_raises_cluster_lost_soon_after_the_gcs_stops_answering():
    server, address = _listener()
    watch = ClusterWatch(address, timeout=1.0, interval=0.1)
    try:
        time.sleep(1.5)
        watch.check()  # it answers: nothing happens
        server.close()
        stopped = time.monotonic()
        with pytest.raises(ClusterLost, match=f'GCS at {address}.*--resume'):
            while time.monotonic() - stopped < 10:
                watch.check()
                time.sleep(0.05)
        assert time.monotonic() - stopped < 3.0  # timeout 1 s + one interval + a probe
    finally:
        watch.close()
        server.close()


def test_refused_connection_says_to_set_the_auth_mode(monkeypatch):
    server, address = _listener()  # something answers there (as a token-auth head does)
    err = ConnectionError(f'Failed to connect to Ray cluster at {address}')
    try:
        monkeypatch.delenv('RAY_AUTH_MODE', raising=False)
        text = explain_connect_error(address, err)
        assert 'export RAY_AUTH_MODE=token' in text and 'ray start --head' not in text
        monkeypatch.setenv('RAY_AUTH_MODE', 'token')
        assert 'token' in explain_connect_error(address, err)
    finally:
        server.close()
    text = explain_connect_error(address, err)  # nothing answers now
    assert 'ray start --head' in text and 'RAY_AUTH_MODE' not in text
