"""
Atomic file writes: a file is either its old content or the complete new one, never half.

Every file the package rewrites in place (checkpoints, resume states, cached baselines, a run's
config) goes through here: the new content is written to a temporary file in the same folder,
flushed to disk (``fsync``), renamed over the target (``os.replace``, atomic on POSIX), and the
folder is synced so the rename itself survives a power loss. On an error the temporary file is
removed and the target is untouched. A process killed outright (SIGKILL, power loss) cannot
clean up: its ``.<name>.*.tmp`` file stays beside the target, which still holds the old content.
"""

import contextlib
import os
from pathlib import Path
import secrets
import stat
from typing import Iterator

TEMP_SUFFIX = '.tmp'


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """
    Yield a temporary path beside ``path``; when the block ends without error, it becomes it.

    For writers that take a file name (``safetensors.torch.save_file``, SB3's ``save``: the
    name ends in ``.tmp``, so SB3 adds no ``.zip``). The parent folder is created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        yield tmp
        os.chmod(tmp, mode)   # a writer that replaced the file (safetensors: 0o600) gets it back
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
    return Path(path)


def write_text(path, text: str, encoding: str = 'utf-8') -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    return write_bytes(path, text.encode(encoding))


def _create_temporary(path: Path) -> Path:
    """
    Create an empty ``.<name>.<random>.tmp`` beside ``path``; return its path.

    Its permissions are those ``open(path, 'w')`` would give (0o666 less the umask), not
    ``tempfile.mkstemp``'s 0o600: a checkpoint is read by the ROS node, maybe as another user.
    """
    for _ in range(100):
        tmp = path.with_name(f'.{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}')
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f'no free temporary name beside {path}')


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; where folders cannot be opened, skipped)."""
    if not hasattr(os, 'O_DIRECTORY'):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
