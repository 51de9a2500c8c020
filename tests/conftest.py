"""Suite-wide pytest set-up: tests/ is importable from its subfolders (tests/ros_domains.py)."""

from pathlib import Path
import sys

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
