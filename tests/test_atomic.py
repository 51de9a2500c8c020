"""Atomic writes: after a failure mid-write the file holds the old or the new content, whole."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

from maml_robot.atomic import atomic_path, write_bytes, write_text
from maml_robot.train_state import save_train_state
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith('.tmp'))


def test_write_replaces_the_content_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / 'sub' / 'f.yaml'
    write_text(path, 'old\n')
    write_text(path, 'new\n')
    assert path.read_text() == 'new\n'
    assert leftovers(path.parent) == []


def test_an_error_in_the_writer_keeps_the_old_content(tmp_path):
    path = write_bytes(tmp_path / 'f.bin', b'old')
    with pytest.raises(RuntimeError, match='disk gone'):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b'half of the n')
            raise RuntimeError('disk gone')
    assert path.read_bytes() == b'old'
    assert leftovers(tmp_path) == []


def test_a_failed_rename_keeps_the_target_and_removes_the_temporary_file(tmp_path):
    target = tmp_path / 'taken'
    (target / 'inside').mkdir(parents=True)        # a folder where the file should go
    with pytest.raises(OSError):
        write_text(target, 'new')
    assert (target / 'inside').is_dir()
    assert leftovers(tmp_path) == []


def run_python(code, **kwargs):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize('writer', ['bytes', 'safetensors'])
def test_a_full_disk_mid_write_keeps_the_old_content(tmp_path, writer):
    """A real write error (file size limit, EFBIG) half-way: old content, no .tmp left."""
    path = tmp_path / 'state.safetensors'
    path.write_bytes(b'old')
    proc = run_python(f"""
        import resource, signal, sys
        import torch
        from maml_robot.atomic import write_bytes
        from maml_robot.train_state import save_train_state
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        try:
            if {writer!r} == 'bytes':
                write_bytes({str(path)!r}, b'n' * 1_000_000)
            else:
                save_train_state({str(path)!r}, {{'w': torch.zeros(250_000)}}, {{}})
        except Exception as err:
            print('failed:', type(err).__name__, err)
            sys.exit(3)
        """)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, (out, err)
    assert path.read_bytes() == b'old'
    assert leftovers(tmp_path) == []


def test_a_killed_writer_leaves_the_old_content(tmp_path):
    """SIGKILL mid-write cannot clean up: the .tmp stays, the target keeps its old content."""
    path = tmp_path / 'latest.safetensors'
    path.write_bytes(b'old')
    proc = run_python(f"""
        import time
        from maml_robot.atomic import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            with open(tmp, 'wb') as f:
                while True:
                    f.write(b'n' * 1000)
                    f.flush()
                    time.sleep(0.01)
        """)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
                p.stat().st_size > 0 for p in tmp_path.glob('.latest.safetensors.*.tmp')):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == b'old'
    assert len(leftovers(tmp_path)) == 1


def test_the_new_file_gets_the_permissions_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        text = write_text(tmp_path / 'config.yaml', 'a: 1\n')
        state = tmp_path / 'resume.safetensors'
        save_train_state(state, {'w': torch.zeros(2)}, {})   # safetensors writes 0o600
    finally:
        os.umask(umask)
    for path in (text, state):
        assert path.stat().st_mode & 0o777 == 0o644, path    # readable by the ROS node's user
