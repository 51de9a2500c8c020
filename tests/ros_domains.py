"""
ROS_DOMAIN_ID allocator of the test suite: every ROS test gets a domain nobody else uses.

A domain is held by an exclusive ``flock`` on ``LOCK_DIR/<id>.lock`` for the life of the test
process, so no other test of this run and no other run on this machine (another pytest, an xdist
worker) gets it; the kernel drops the lock when the process ends, so a crashed run leaves nothing
to clean up. A domain is never handed out twice in one process, even after its test has ended: a
node left over from one test cannot talk to the next. Free domains are taken least recently used
first (the lock file's mtime), so a node left over from an earlier run is the last to meet a new
test. The lock does not pass to the node processes a test starts (descriptors are not inherited):
a node that outlives its test process no longer holds its domain.

Range: 1..MAX_DOMAIN_ID (232, maml_robot/commands/arguments.py). Fast DDS, the RMW of the rclpy
wheels, maps domain d to UDP ports 7400 + 250 d + small offsets, below 65536 up to d = 232 with
default ports. Domain 0 is left to whatever runs without ROS_DOMAIN_ID. Domains 102..232 put
their ports in Linux's ephemeral range (32768..60999), where a port already taken makes Fast DDS
move to the next participant port; test_ros_nodes used 120..219 before this allocator.
"""

import fcntl
import os
from pathlib import Path

from maml_robot.commands.arguments import MAX_DOMAIN_ID

LOCK_DIR = Path('/tmp/maml_robot_ros_domains')
"""Machine-wide, as DDS traffic is (not tempfile.gettempdir(), which TMPDIR moves per run)."""
DOMAINS = range(1, MAX_DOMAIN_ID + 1)
"""The domains handed out (0 is the default domain of everything else)."""
_held = {}      # domain -> open descriptor holding its lock, for the life of the process


def domain_id():
    """
    Return a ROS_DOMAIN_ID no other test of this run, nor any other run on this machine, uses.

    Raises RuntimeError when every domain is held (too many test runs at once).
    """
    LOCK_DIR.mkdir(exist_ok=True)
    for domain in sorted(DOMAINS, key=_last_used):
        if domain in _held:
            continue
        fd = _try_hold(domain)
        if fd is not None:
            _held[domain] = fd
            os.utime(fd)           # least recently used first, next time
            return domain
    raise RuntimeError(f'every ROS_DOMAIN_ID {DOMAINS.start}..{DOMAINS.stop - 1} is held: '
                       f'{len(_held)} by this process, the rest by other processes locking '
                       f'{LOCK_DIR}/<id>.lock; wait for other test runs to finish')


def _last_used(domain):
    """Return when ``domain`` was last handed out (its lock file's mtime; 0.0 never)."""
    try:
        return (LOCK_DIR / f'{domain}.lock').stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _try_hold(domain):
    """Return an open descriptor holding ``domain``'s lock, or None when another holds it."""
    fd = os.open(LOCK_DIR / f'{domain}.lock', os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
