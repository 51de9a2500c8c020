"""The Ray backend's link to its cluster: connecting, watching the head, and ClusterLost."""

import os
import re
import socket
import threading
import time

from maml_robot.sampling.backend import SamplerError

INSTALL_HINT = ("pip install 'maml_robot[ray]' (or pip install ray==2.60.0); the default "
                '--backend local needs no Ray')
WATCH_INTERVAL = 1.0
"""Seconds between two checks of the cluster's control service (GCS) by the watch thread."""
RESUME_HINT = 'Bring the cluster back and continue with --resume (docs/RAY.md)'


class ClusterLost(SamplerError):
    """
    The driver lost its Ray cluster: head gone, Ray shut down, or no node left for a worker.

    A :class:`~maml_robot.sampler.SamplerError` (so a trainer that saves its state on
    ``SamplerError`` does so here too), but a distinct type: retrying cannot help, the cluster
    must be brought back (``ray start``) and training continued with ``--resume``.
    """


def import_ray():
    """Import Ray on demand; raise an ImportError that says how to install it."""
    try:
        # lazy: Ray is an optional extra (pip install maml_robot[ray])
        import ray
    except ImportError as err:
        raise ImportError(f'the Ray backend needs Ray, which is not installed: {INSTALL_HINT}'
                          ) from err
    return ray


def connect(ray, address: str | None, init_kwargs: dict) -> bool:
    """
    Join the cluster at ``address`` (None: start a private one); return whether we started Ray.

    Nothing happens when Ray is already initialized in this process. A failure raises
    :class:`ClusterLost` that says what to change: start a head, or set ``RAY_AUTH_MODE=token``
    when a head answers at the address but refuses this process (Ray 2.60's token auth).
    """
    if ray.is_initialized():
        return False
    kwargs = {'include_dashboard': False, 'address': address, **init_kwargs}
    if address is not None:
        kwargs.pop('num_cpus', None)  # a running cluster has its own resources
    try:
        ray.init(**kwargs)
    except ray.exceptions.AuthenticationError as err:
        raise ClusterLost(f'the Ray cluster at {address!r} refused this process: {err}') from err
    except ConnectionError as err:
        raise ClusterLost(explain_connect_error(address, err)) from err
    return True


def explain_connect_error(address: str | None, err: Exception) -> str:
    """Return why ``ray.init(address)`` failed and what to do, from who answers there."""
    found = re.search(r'at ([\w.\-]+):(\d+)', str(err))
    where = (found.group(1), int(found.group(2))) if found else _host_port(address)
    mode = os.environ.get('RAY_AUTH_MODE')
    if where is not None and _answers(where, 2.0):
        if mode != 'token':
            return (f'a Ray head answers at {where[0]}:{where[1]} but refused this process '
                    f'({err}): RAY_AUTH_MODE is {mode or "unset"} here. A cluster started '
                    'with RAY_AUTH_MODE=token needs it in the training process too: '
                    'export RAY_AUTH_MODE=token (and the token in ~/.ray/auth_token or '
                    'RAY_AUTH_TOKEN), then run again (docs/RAY.md)')
        return (f'a Ray head answers at {where[0]}:{where[1]} but refused this process '
                f"({err}): check that this process has the cluster's token "
                '(~/.ray/auth_token or RAY_AUTH_TOKEN) and the same Ray version (docs/RAY.md)')
    return (f'could not reach the Ray cluster at {address!r}: {err}. Start it with '
            '`ray start --head` (see docs/RAY.md) or pass --ray-address HOST:PORT of its head')


def cluster_call(ray, watch, fn, *args, **kwargs):
    """
    Call the Ray API function ``fn``; turn any sign of a lost cluster into ClusterLost.

    Lost: Ray shut down in this process, the watch saw the head silent too long, or the call
    failed with a system error (Ray's own, or an ``OSError`` such as the broken pipe to a dead
    head's raylet). Errors of a task or an actor (a ``RayError``; ``GetTimeoutError`` is an
    ``OSError`` too) are the caller's to handle and pass through.
    """
    if not ray.is_initialized():
        raise ClusterLost('Ray was shut down in this process; the worker actors are gone. '
                          'Continue with --resume once the cluster is back')
    if watch is not None:
        watch.check()
    lost = (ray.exceptions.RaySystemError, ray.exceptions.RpcError,
            ray.exceptions.LocalRayletDiedError, ray.exceptions.AuthenticationError)
    try:
        return fn(*args, **kwargs)
    except lost as err:
        raise ClusterLost(f'lost the connection to the Ray cluster: {one_line(err)}. '
                          f'{RESUME_HINT}') from err
    except ray.exceptions.RayError:
        raise
    except OSError as err:
        raise ClusterLost(f'lost the connection to the Ray cluster ({type(err).__name__}: '
                          f'{one_line(err)}). {RESUME_HINT}') from err


class ClusterWatch:
    """
    Watch the cluster's control service (GCS, on the head node) from a daemon thread.

    Every ``interval`` seconds the thread opens (and closes) a TCP connection to the GCS port.
    :meth:`check` raises :class:`ClusterLost` once no connection succeeded for ``timeout``
    seconds and one tried right then fails too; Ray itself would end the driver after 60 s.

    :param address: ``HOST:PORT`` of the GCS (``ray.get_runtime_context().gcs_address``).
    :param timeout: seconds the GCS may stay unreachable (a restart of the head may fit).
    :param interval: seconds between two connection attempts.
    """

    def __init__(self, address: str, timeout: float, interval: float = WATCH_INTERVAL):
        self.address = address
        self.where = _host_port(address)
        if self.where is None:
            raise ValueError(f'GCS address must be HOST:PORT, got {address!r}')
        self.timeout = timeout
        self.interval = interval
        self.last_ok = time.monotonic()
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='ray-gcs-watch', daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._probe()

    def _probe(self) -> bool:
        ok = _answers(self.where, min(2.0, self.timeout), self)
        if ok:
            self.last_ok = time.monotonic()
        return ok

    def check(self) -> None:
        """Raise ClusterLost when the GCS did not answer for ``timeout`` seconds."""
        silent = time.monotonic() - self.last_ok
        if silent <= self.timeout or self._probe():  # a busy driver may have starved the thread
            return
        raise ClusterLost(f"the Ray cluster's head (GCS at {self.address}) has not answered for "
                          f'{silent:.0f} s (last: {self.error}): the head node is down or '
                          f'unreachable, and the worker actors are lost. {RESUME_HINT}')

    def close(self) -> None:
        """Stop the watch thread (it is a daemon: it never keeps the process alive)."""
        self._stop.set()


def probe_nodes(ray, timeout: float, watch=None) -> None:
    """
    Raise ClusterLost when the cluster does not say within ``timeout`` s that a node lives.

    With a ``watch``, it is checked every second meanwhile: a head already silent for its
    timeout ends the wait at once (the probe would only wait for it).
    """
    result = {}

    def probe():
        try:
            result['nodes'] = ray.nodes()
        except Exception as err:  # noqa: B902 - any failure to ask means no cluster
            result['error'] = err

    thread = threading.Thread(target=probe, name='ray-cluster-probe', daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(min(WATCH_INTERVAL, max(0.0, deadline - time.monotonic())))
        if watch is not None:
            watch.check()
    if 'nodes' not in result:
        why = result.get('error', f'no answer within {timeout:.0f} s')
        raise ClusterLost(f'the Ray cluster does not answer ({why}); the worker actors are '
                          f'lost. {RESUME_HINT}')
    if not any(node.get('Alive') for node in result['nodes']):
        raise ClusterLost(f'no node of the Ray cluster is alive. {RESUME_HINT}')


def _answers(where: tuple, timeout: float, note=None) -> bool:
    """Return whether a TCP connection to ``where`` (host, port) opens within ``timeout``."""
    try:
        with socket.create_connection(where, timeout=timeout):
            return True
    except OSError as err:
        if note is not None:
            note.error = f'{type(err).__name__}: {err}'
        return False


def _host_port(address: str | None):
    """Return ``(host, port)`` of ``'HOST:PORT'``, or None (None, 'auto', no port)."""
    if not address or ':' not in address:
        return None
    host, _, port = address.rpartition(':')
    return (host.strip('[]'), int(port)) if port.isdigit() else None


def one_line(err) -> str:
    """Return Ray's multi-line error text as one line: its first and last lines."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return ' '.join(lines[:1] + lines[-1:]) if len(lines) > 1 else ''.join(lines)
