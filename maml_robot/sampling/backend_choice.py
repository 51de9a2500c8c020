"""Choosing the sampler's worker pool from the command line: local processes or Ray actors."""

import argparse
import math

from maml_robot.sampling.backend import WorkerBackend
from maml_robot.sampling.local import ProcessBackend
from maml_robot.sampling.ray_cluster import import_ray

BACKENDS = ('local', 'ray')
START_TIMEOUT = 120.0
"""Default seconds a worker may take to start (be placed, build its environments)."""


def seconds(text: str) -> float:
    """Parse a number of seconds > 0 (an argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number of seconds > 0, got {text!r}'
                                         ) from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'expected a number of seconds > 0, got {value}')
    return value


def add_backend_arguments(parser) -> None:
    """Declare ``--backend``, ``--ray-address`` and ``--worker-start-timeout`` on a parser."""
    parser.add_argument('--backend', default='local', choices=BACKENDS,
                        help='where rollout workers run: local processes (default) or Ray '
                             "actors (needs pip install 'maml_robot[ray]')")
    parser.add_argument('--ray-address', default=None,
                        help='with --backend ray: auto (the cluster started here with '
                             '`ray start --head`) or HOST:PORT of a head node; default: a '
                             'private Ray instance on this machine')
    parser.add_argument('--worker-start-timeout', type=seconds, default=START_TIMEOUT,
                        metavar='SECONDS',
                        help='seconds a worker may take to start (be placed on a node and '
                             'build its environments), also when one lost with its Ray node '
                             'is replaced; the wait is logged every 10 s, and then the run '
                             f'stops with its state saved (default {START_TIMEOUT:g})')


def make_backend(name: str, num_workers: int, *, ray_address: str | None = None,
                 step_timeout: float = 60.0, **kwargs) -> WorkerBackend:
    """
    Return the worker pool ``name`` ('local' or 'ray') with ``num_workers`` workers.

    ``ray_address`` only goes with 'ray'. Extra keyword arguments (e.g. ``start_timeout``) go
    to the backend's constructor. Ray is imported here (and fails with an install hint) only
    for 'ray'.
    """
    if name == 'local':
        if ray_address is not None:
            raise ValueError('--ray-address needs --backend ray')
        return ProcessBackend(num_workers, step_timeout=step_timeout, **kwargs)
    if name == 'ray':
        import_ray()  # fail now, with the install hint, not at the first rollout
        # lazy: only --backend ray needs it, and ray_backend imports this module (a cycle)
        from maml_robot.sampling.ray_backend import RayBackend
        return RayBackend(num_workers, address=ray_address, step_timeout=step_timeout,
                          **kwargs)
    raise ValueError(f'backend must be one of {BACKENDS}, got {name!r}')
