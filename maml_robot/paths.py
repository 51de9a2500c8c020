"""Locate the package's shared data (urdf/, sim/, config/, launch/) in any install layout."""

import os
from pathlib import Path
import sys

PACKAGE = 'maml_robot'
_DATA_DIRS = ('urdf', 'sim', 'config', 'launch')


def _candidates():
    env = os.environ.get('MAML_ROBOT_SHARE')
    if env:
        yield Path(env)
    # A source checkout or an editable install: the data sits beside the package.
    yield Path(__file__).resolve().parent.parent
    # colcon / ament install: share/maml_robot registered in the ament index.
    try:
        from ament_index_python.packages import get_package_share_directory
        yield Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: B902 - the ament index is optional (missing package or module)
        pass
    # pip install: data_files land under <prefix>/share/maml_robot.
    yield Path(sys.prefix) / 'share' / PACKAGE


def share_dir() -> Path:
    """Return the folder that holds urdf/, sim/, config/ and launch/."""
    tried = []
    for cand in _candidates():
        tried.append(str(cand))
        if all((cand / d).is_dir() for d in ('urdf', 'sim')):
            return cand
    raise FileNotFoundError(
        f'cannot find maml_robot data folders {_DATA_DIRS}; looked in {tried}. '
        'Set MAML_ROBOT_SHARE to the folder that holds urdf/ and sim/.')


def data_path(*parts: str) -> Path:
    """Return a path inside the shared data folder (e.g. the parts ``'sim', 'reacher.yaml'``)."""
    return share_dir().joinpath(*parts)
