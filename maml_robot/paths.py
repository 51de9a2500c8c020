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
        # lazy: ament_index_python exists only in a ROS install (optional for pip users)
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


def _package_search_path():
    """Yield folders that may hold ROS packages (for ``package://`` URDF references)."""
    for entry in os.environ.get('MAML_ROBOT_PACKAGE_PATH', '').split(os.pathsep):
        if entry:
            yield Path(entry).expanduser()
    for entry in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if entry:
            yield Path(entry) / 'share'


def urdf_candidates(text: str, base: Path) -> list:
    """
    Return the files a scenario's ``urdf:`` value may name, in the order they are tried.

    ``pybullet_data://REL``: REL inside the pybullet wheel's data folder (the same on every
    machine); ``package://PKG/REL``: REL inside package PKG, looked up in MAML_ROBOT_PACKAGE_PATH
    (folders that hold packages) and the ament index (``share/PKG``); ``maml_robot`` is this
    package's own data folder. Any other text is a path: absolute, or relative to ``base`` (the
    scenario's folder) and then the package's ``urdf/``.
    """
    if text.startswith('pybullet_data://'):
        # lazy: the adapter node runs without pybullet; only pybullet_data:// URDFs need it
        import pybullet_data
        rel = text[len('pybullet_data://'):]
        return [Path(pybullet_data.getDataPath()) / rel]
    if text.startswith('package://'):
        pkg, _, rel = text[len('package://'):].partition('/')
        if not pkg or not rel:
            raise ValueError('package://PKG/PATH with a package name and a path inside it')
        found = [root / pkg / rel for root in _package_search_path()]
        if pkg == PACKAGE:
            found.append(share_dir() / rel)
        return found
    path = Path(text).expanduser()
    if path.is_absolute():
        return [path]
    return [base / text, data_path('urdf', Path(text).name)]
