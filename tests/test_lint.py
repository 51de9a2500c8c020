"""ament linters (flake8 with the ROS plugins, pep257) over the whole package."""

from pathlib import Path

from ament_flake8.main import main_with_errors
from ament_pep257.main import main as pep257_main
import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = [str(ROOT / p) for p in ('maml_robot', 'tests', 'launch', 'benchmarks', 'setup.py')]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=PATHS)
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = pep257_main(argv=PATHS)
    assert rc == 0, 'Found code style errors / warnings'
