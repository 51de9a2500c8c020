#!/usr/bin/env bash
# The README's test command: install everything from scratch (or update), then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
