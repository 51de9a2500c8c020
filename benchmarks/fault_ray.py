"""
The fault suite's 'Ray cluster' section: a real 2-node Ray cluster on this host, broken mid-run.

Each case starts a head and a worker node with ``ray start`` (1 CPU each, no dashboard), runs
``maml-robot train --backend ray`` on it (reacher, 2 workers: one actor per node), breaks the
cluster once a few iterations are done (head node killed, its GCS killed, the worker node
killed with no spare CPU for its actor; also the GCS of a private Ray instance, and a driver
without ``RAY_AUTH_MODE`` against a token cluster), and records how the run ends: exit code,
seconds from the fault to the save and to the exit, a clear message or a traceback, and
whether the completed iterations were saved (then ``--resume`` must continue them). Run it
alone with::

    PYTHONPATH=. .venv/bin/python benchmarks/fault_suite.py --only ray
"""

import csv
import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RAY_ENV = {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '1', 'RAY_USAGE_STATS_ENABLED': '0'}
TOKEN = 'c0ffee00c0ffee00c0ffee00c0ffee00'
LIMIT_S = 150.0
"""Seconds after the fault before a run counts as hung."""
KILL_AFTER = 3
"""Completed iterations before the fault (the regular save is every 10: none of them saved)."""
TRAIN = ['--scenario', 'reacher', '--workers', '2', '--tasks', '2', '--rollouts', '2',
         '--horizon', '20', '--iterations', '400', '--device', 'cpu', '--no-progress',
         '--backend', 'ray']


class Cluster:
    """A head and a worker node started with ``ray start`` on loopback, in their own groups."""

    def __init__(self, auth: str = 'disabled'):
        self.dir = tempfile.mkdtemp(prefix='rf', dir='/tmp')  # short: Ray's socket paths
        self.env = {**os.environ, **RAY_ENV, 'RAY_TMPDIR': self.dir, 'RAY_AUTH_MODE': auth,
                    'HOME': self.dir}  # a token file, if any, stays in here
        if auth == 'token':
            self.env['RAY_AUTH_TOKEN'] = TOKEN
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.address = f'127.0.0.1:{self.port}'
        self.driver = None  # the training process, set by train()
        ray = str(Path(sys.executable).with_name('ray'))
        common = ['--block', '--num-cpus=1', '--disable-usage-stats',
                  '--node-ip-address=127.0.0.1']
        self.head = self._start([ray, 'start', '--head', f'--port={self.port}',
                                 '--include-dashboard=false', f'--temp-dir={self.dir}'] + common)
        self.worker = self._start([ray, 'start', f'--address={self.address}'] + common)

    def _start(self, cmd):
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for line in proc.stdout:
            if 'Ray runtime started' in line:
                return proc
        raise RuntimeError(f'{" ".join(cmd)} exited before the Ray runtime started')

    def gcs_pids(self):
        """Return the pids of the head's GCS server."""
        found = subprocess.run(['pgrep', '-g', str(self.head.pid), '-f', 'gcs_server'],
                               capture_output=True, text=True).stdout.split()
        return [int(p) for p in found]

    def close(self):
        """Kill every process of both nodes and remove the temporary folder."""
        for proc in (self.head, self.worker):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRay:
    """No cluster: ``maml-robot train`` starts a private Ray instance (its GCS is a child)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='rf', dir='/tmp')
        self.env = {**os.environ, **RAY_ENV, 'RAY_TMPDIR': self.dir, 'RAY_AUTH_MODE': 'disabled',
                    'HOME': self.dir}
        self.address = None
        self.driver = None  # the training process, set by train()

    def close(self):
        """Kill what is left of the training process group; remove the temporary folder."""
        try:
            os.killpg(self.driver.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def completed(out: Path) -> int:
    """Return the iterations logged in ``out``/progress.csv."""
    try:
        with open(out / 'progress.csv', newline='', encoding='utf-8') as f:
            return len(list(csv.DictReader(f)))
    except FileNotFoundError:
        return 0


def saved(out: Path):
    """Return the iteration of ``out``/resume.safetensors, or None."""
    from maml_robot.train_state import load_train_state
    try:
        return int(load_train_state(out / 'resume.safetensors')[1]['iteration'])
    except (FileNotFoundError, ValueError):
        return None


def saved_after(out: Path, wall0: float):
    """Return the seconds from ``wall0`` to the last write of the resume state (or None)."""
    try:
        return (out / 'resume.safetensors').stat().st_mtime - wall0
    except FileNotFoundError:
        return None


def train(cluster, out, extra=(), env=None):
    """Start ``maml-robot train`` on ``cluster``; return the process (output in out.log)."""
    where = [] if cluster.address is None else ['--ray-address', cluster.address]
    cmd = [sys.executable, '-m', 'maml_robot.cli', 'train', '--out', str(out), *where, *TRAIN,
           *extra]
    log = open(f'{out}.log', 'w')
    cluster.driver = subprocess.Popen(cmd, env=env or cluster.env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
    return cluster.driver


def break_and_watch(what, fault, extra=(), private=False):
    """Run one case: train, wait for KILL_AFTER iterations, call ``fault``; return a record."""
    work = Path(tempfile.mkdtemp(prefix='rayfault'))
    out = work / 'run'
    cluster = PrivateRay() if private else Cluster()
    proc = None
    try:
        proc = train(cluster, out, extra)
        while completed(out) < KILL_AFTER and proc.poll() is None:
            time.sleep(0.2)
        done_before = completed(out)
        t0, wall0 = time.monotonic(), time.time()
        fault(cluster)
        try:
            rc = proc.wait(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            rc = None
        seconds = time.monotonic() - t0
        record = {'case': what, 'rc': rc, 'seconds': seconds, 'completed': completed(out),
                  'completed_before': done_before, 'saved': saved(out),
                  'saved_after': saved_after(out, wall0),
                  'log': Path(f'{out}.log').read_text(errors='replace')}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.close()
    record['resumed'] = resume_locally(out, record)
    shutil.rmtree(work, ignore_errors=True)
    return record


def resume_locally(out, record):
    """Continue the run one iteration further with the local backend; return its iterations."""
    if record['saved'] is None:
        return None
    cmd = [sys.executable, '-m', 'maml_robot.cli', 'train', '--out', str(out), '--resume',
           '--iterations', str(record['saved'] + 1), '--no-progress', '--workers', '2',
           '--device', 'cpu']
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return saved(out) if done.returncode == 0 else None


def kill_head(cluster):
    """SIGKILL every process of the head node (GCS, raylet, its actor)."""
    os.killpg(cluster.head.pid, signal.SIGKILL)


def kill_gcs(cluster):
    """SIGKILL only the head's GCS server."""
    for pid in cluster.gcs_pids():
        os.kill(pid, signal.SIGKILL)


def kill_private_gcs(cluster):
    """SIGKILL the GCS server of the private Ray instance of the training process."""
    found = subprocess.run(['pgrep', '-g', str(cluster.driver.pid), '-f', 'gcs_server'],
                           capture_output=True, text=True).stdout.split()
    for pid in found:
        os.kill(int(pid), signal.SIGKILL)


def kill_worker_node(cluster):
    """SIGKILL the worker node: its actor is lost and the head has no spare CPU for it."""
    os.killpg(cluster.worker.pid, signal.SIGKILL)


def auth_case():
    """Run a driver without RAY_AUTH_MODE against a token cluster; return a record."""
    work = Path(tempfile.mkdtemp(prefix='rayfault'))
    out = work / 'run'
    cluster = Cluster(auth='token')
    try:
        env = {k: v for k, v in cluster.env.items() if k != 'RAY_AUTH_MODE'}
        t0 = time.monotonic()
        proc = train(cluster, out, env=env)
        try:
            rc = proc.wait(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        record = {'case': 'driver without RAY_AUTH_MODE, token cluster', 'rc': rc,
                  'seconds': time.monotonic() - t0, 'completed': 0, 'completed_before': 0,
                  'saved': None, 'saved_after': None, 'resumed': None,
                  'log': Path(f'{out}.log').read_text(errors='replace')}
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    record['clear_hint'] = 'RAY_AUTH_MODE=token' in record['log']
    return record


def ray_cases(tally):
    """Run the Ray cluster section of the fault suite; count each case into ``tally``."""
    records = [
        break_and_watch('head node killed', kill_head),
        break_and_watch('GCS killed', kill_gcs),
        break_and_watch('GCS of a private Ray instance killed', kill_private_gcs,
                        private=True),
        break_and_watch('worker node lost, no spare CPU', kill_worker_node,
                        ('--worker-start-timeout', '20')),
        auth_case()]
    for r in records:
        tally.inputs += 1
        log = r['log']
        clear = (r['rc'] not in (0, None) and 'error:' in log and 'Traceback' not in log
                 and ('--resume' in log or r.get('clear_hint')))
        tally.clear_errors += int(bool(clear))
        tally.tracebacks += int('Traceback' in log)
        tally.hangs += int(r['rc'] is None)
        lost = r['completed'] > 0 and (r['saved'] is None or r['saved'] < r['completed'])
        tally.lost += int(lost)
        if r['case'].startswith('driver') and not r.get('clear_hint'):
            tally.notes.append(f"{r['case']}: the message does not say to set RAY_AUTH_MODE")
        if lost:
            tally.notes.append(f"{r['case']}: {r['completed']} iterations done, saved "
                               f"{r['saved']}")
        tail = ' | '.join(line for line in log.splitlines()
                          if 'error' in line.lower() or 'waiting' in line)[-400:]
        at = '-' if r['saved_after'] is None else f"{r['saved_after']:.1f}"
        tally.ray_rows.append(
            f"| {r['case']} | {r['rc']} | {at} | {r['seconds']:.1f} | {r['completed_before']} "
            f"-> {r['completed']} | {r['saved']} | {r['resumed']} | {tail} |")
