#!/usr/bin/env bash
# The test command of README.md: set up .venv if needed, then run the default (fast) suite
# (extra arguments go to pytest).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
# Two worker processes (pytest-xdist), one test file per worker at a time: the machine has 2
# cores and each test runs torch on one thread (tests/conftest.py).
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit "$rc"
