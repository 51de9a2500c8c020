#!/usr/bin/env bash
# Create .venv and install maml_robot with its ROS 2 wheels and test tools, pinned by
# constraints.txt. Safe to re-run: an existing .venv is reused and brought up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first, pinned: 2.13.0 is the CPU build here; an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[ros,dev,ray]'
.venv/bin/python -c 'import torch, pybullet, gymnasium, stable_baselines3, rclpy, ray' \
  || { echo 'setup.sh: install incomplete (see pip output above)' >&2; exit 1; }
