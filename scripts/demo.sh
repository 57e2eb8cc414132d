#!/usr/bin/env bash
# The main job of README.md: set up .venv if needed, then run a short fuzz campaign on the
# built-in LeNet-5 digits model. Extra arguments go to `neurofuzz demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/neurofuzz demo "$@"
