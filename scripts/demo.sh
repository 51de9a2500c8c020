#!/usr/bin/env bash
# The README's main job: install, then run `maml-robot demo` on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/maml-robot demo "$@"
