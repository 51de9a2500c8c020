"""
ROS_DOMAIN_ID allocation: a domain no other process on this machine is using (tests, benchmarks).

A domain is held by an exclusive ``flock`` on ``LOCK_DIR/<id>.lock`` for the life of the process
that took it, so no other allocator (another test run, an xdist worker, a benchmark) gets it; the
kernel drops the lock when the process ends, so a crashed run leaves nothing to clean up. An
allocator never hands a domain out twice, even after its user has finished: a node left over from
one test cannot talk to the next. Free domains are taken least recently used first (the lock
file's mtime), so a node left over from an earlier run is the last to meet a new one. The lock
does not pass to the node processes the holder starts (descriptors are not inherited): a node
that outlives its holder no longer holds its domain.

Range: 1..MAX_DOMAIN_ID (232). Fast DDS, the RMW of the rclpy wheels, maps domain d to UDP ports
7400 + 250 d + small offsets, below 65536 up to d = 232 with default ports. Domain 0 is left to
whatever runs without ROS_DOMAIN_ID. Domains 102..232 put their ports in Linux's ephemeral range
(32768..60999), where a port already taken makes Fast DDS move to the next participant port.
Only the standard library: importing this loads no ROS.
"""

import fcntl
import os
from pathlib import Path

MAX_DOMAIN_ID = 232
"""Largest ROS_DOMAIN_ID DDS maps to ports (0..101 is safe on Linux; see the ROS 2 docs)."""
LOCK_DIR = Path('/tmp/maml_robot_ros_domains')
"""Machine-wide, as DDS traffic is (not tempfile.gettempdir(), which TMPDIR moves per run)."""
DOMAINS = range(1, MAX_DOMAIN_ID + 1)
"""The domains handed out (0 is the default domain of everything else)."""


class DomainAllocator:
    """Hand out ROS_DOMAIN_IDs, each held by a lock file for the life of this process."""

    def __init__(self, domains: range = DOMAINS, lock_dir: Path = LOCK_DIR):
        """
        Build an allocator.

        :param domains: the domains it may hand out.
        :param lock_dir: the folder of the lock files (one per domain), shared by every
            allocator on the machine.
        """
        self.domains = domains
        self.lock_dir = Path(lock_dir)
        self.held = {}      # domain -> open descriptor holding its lock, for the process's life

    def domain_id(self) -> int:
        """
        Return a ROS_DOMAIN_ID no other allocator on this machine holds, nor this one handed out.

        Raises RuntimeError when every domain is held (too many runs at once).
        """
        self.lock_dir.mkdir(exist_ok=True)
        for domain in sorted(self.domains, key=self.last_used):
            if domain in self.held:
                continue
            fd = self.try_hold(domain)
            if fd is not None:
                self.held[domain] = fd
                os.utime(fd)           # least recently used first, next time
                return domain
        raise RuntimeError(
            f'every ROS_DOMAIN_ID {self.domains.start}..{self.domains.stop - 1} is held: '
            f'{len(self.held)} by this process, the rest by other processes locking '
            f'{self.lock_dir}/<id>.lock; wait for other test runs or benchmarks to finish, or '
            'pass a domain yourself')

    def last_used(self, domain: int) -> float:
        """Return when ``domain`` was last handed out (its lock file's mtime; 0.0 never)."""
        try:
            return (self.lock_dir / f'{domain}.lock').stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def try_hold(self, domain: int):
        """Return an open descriptor holding ``domain``'s lock, or None when another holds it."""
        fd = os.open(self.lock_dir / f'{domain}.lock', os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd


ALLOCATOR = DomainAllocator()
"""This process's allocator: every domain it holds stays held until the process ends."""


def domain_id() -> int:
    """Return a ROS_DOMAIN_ID from this process's allocator (see :class:`DomainAllocator`)."""
    return ALLOCATOR.domain_id()
