"""ament linters (flake8 with the ROS plugins, pep257) over the whole package."""

from pathlib import Path
import subprocess
import sys

from ament_pep257.main import main as pep257_main
import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = [str(ROOT / p) for p in ('maml_robot', 'tests', 'launch', 'benchmarks', 'setup.py')]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    # in a fresh process: flake8 forks its worker processes, and a fork of this one after the
    # in-process ROS tests (DDS threads still alive) can crash in the child and hang the pool
    code = ('import sys; from ament_flake8.main import main_with_errors; '
            'rc, errors = main_with_errors(argv=sys.argv[1:]); sys.exit(rc)')
    out = subprocess.run([sys.executable, '-c', code, *PATHS], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, 'code style errors / warnings:\n' + out.stdout[-20000:]


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = pep257_main(argv=PATHS)
    assert rc == 0, 'Found code style errors / warnings'
