"""Stop signals (SIGTERM, SIGHUP) that take Ctrl-C's path, and the exit codes they give."""

import contextlib
import signal
import threading

STOP_SIGNALS = ('SIGTERM', 'SIGHUP')
"""Signals that stop a command the way Ctrl-C does (a scheduler, ``kill``, a closed terminal)."""


class StopRequested(KeyboardInterrupt):
    """A stop signal (SIGTERM from a scheduler or ``kill``, SIGHUP) taking Ctrl-C's path."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(err: KeyboardInterrupt) -> int:
    """Return the signal behind a KeyboardInterrupt: its ``signum``, else SIGINT (Ctrl-C)."""
    return int(getattr(err, 'signum', signal.SIGINT))


def exit_code(returncode: int) -> int:
    """Return a child's exit status as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@contextlib.contextmanager
def stop_signals_raise(names=STOP_SIGNALS):
    """
    While the block runs, ``names`` (SIGTERM, SIGHUP) raise :class:`StopRequested`.

    Only in the main thread (elsewhere signals cannot be handled and nothing changes).
    A signal the caller set to be ignored (e.g. SIGHUP under ``nohup``) stays ignored, and a
    second signal while the first is handled ends the process at once (default action).
    """
    def handler(signum, frame):
        signal.signal(signum, signal.SIG_DFL)   # a second one is not graceful
        raise StopRequested(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in names:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
