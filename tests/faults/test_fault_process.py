"""Issue 18.6: stopping a wrapper command (SIGTERM, SIGHUP, SIGINT) stops its nodes too."""

import os
import selectors
import signal
import subprocess
import sys
import time

from maml_robot import online
from maml_robot.checkpoint import save_checkpoint
from maml_robot.scenario import load_scenario
import pytest
from ros_domains import domain_id

UP_TIMEOUT = 120.0     # s: a busy CI machine imports torch and rclpy slowly
# s: the wrapper forwards the signal, waits up to 10 s for its nodes (then kills them) and
# exits; a busy CI machine needs more than those 10 s to see all of it through
GONE_TIMEOUT = 30.0


def _default_stop_signals():
    # as a terminal starts a command: a suite run under nohup passes SIGHUP on as ignored, one
    # run in the background of a non-interactive shell SIGINT, and the wrapper rightly keeps an
    # ignored signal ignored
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def children(pid):
    """Return the pids of the direct children of ``pid`` (Linux /proc)."""
    found = []
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{task}/children') as f:
                found += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            pass
    return found


def alive(pid):
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def wait_for_line(proc, text, timeout):
    """Read the wrapper's output until a line contains ``text``; return everything read."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen, deadline = b'', time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            pytest.fail(f'no {text!r} from the node; output:\n{seen.decode(errors="replace")}')
        if sel.select(min(left, 1.0)):
            seen += os.read(proc.stdout.fileno(), 65536)
    return seen.decode(errors='replace')


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'fresh.safetensors'
    save_checkpoint(path, online.fresh_checkpoint(load_scenario('reacher'), seed=0))
    return path


def start(command, extra, up_line, count=1):
    """Start ``maml-robot COMMAND`` on its own domain; return (wrapper, node pids) once up."""
    # faulthandler: a wrapper that hangs is sent SIGABRT and dumps every thread's stack
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONFAULTHANDLER='1',
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    argv = [sys.executable, '-m', 'maml_robot.cli', command, '--domain-id',
            str(domain_id())] + extra
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_default_stop_signals)
    try:
        wait_for_line(proc, up_line, UP_TIMEOUT)
        nodes = children(proc.pid)
        assert len(nodes) == count, f'expected {count} node processes, got {nodes}'
    except BaseException:
        proc.kill()
        raise
    return proc, nodes


def stop_and_check(proc, nodes, signum):
    """Send ``signum`` to the wrapper only; all must be gone and the code 128 + signum."""
    proc.send_signal(signum)
    try:
        code = proc.wait(GONE_TIMEOUT)
    except subprocess.TimeoutExpired:
        state = {pid: alive(pid) for pid in nodes}
        os.kill(proc.pid, signal.SIGABRT)           # its stacks, where it hangs
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for pid in nodes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f'the wrapper did not exit within {GONE_TIMEOUT} s of {signum.name} '
                    f'(nodes alive: {state}); its output:\n'
                    f'{proc.stdout.read().decode(errors="replace")[-6000:]}')
    deadline = time.monotonic() + GONE_TIMEOUT
    while any(map(alive, nodes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in nodes if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f'node processes {left} outlived their wrapper after {signum.name}'

    output = proc.stdout.read().decode(errors='replace')
    assert code == 128 + signum, f'exit code {code} after {signum.name}; output:\n{output}'
    assert 'Traceback' not in output, output


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_stopping_adapt_stops_its_node(checkpoint, signum):
    proc, nodes = start('adapt', ['--set', f'checkpoint={checkpoint}'], 'active: publishing')
    stop_and_check(proc, nodes, signum)


@pytest.mark.slow
def test_sigterm_to_sim_stops_its_node():
    proc, nodes = start('sim', [], ' Hz x')
    time.sleep(2.0)     # past start-up: the node spins
    stop_and_check(proc, nodes, signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_to_launch_stops_both_nodes(checkpoint):
    proc, nodes = start('launch', ['--checkpoint', str(checkpoint)], 'active: publishing', 2)
    stop_and_check(proc, nodes, signal.SIGTERM)


def test_a_node_killed_by_a_signal_gives_128_plus_the_signal():
    from maml_robot.stop_signals import exit_code
    assert exit_code(-signal.SIGINT) == 130 and exit_code(-signal.SIGTERM) == 143
    assert exit_code(0) == 0 and exit_code(2) == 2
