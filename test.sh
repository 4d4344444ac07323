#!/usr/bin/env bash
# Set up (first run) and run the whole test suite, lint included: ./test.sh [pytest args]
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
# The qwen extra too: its engine's tests run on CPU with a tiny random-weight pipeline.
PHOTOREMIX_EXTRAS=test,qwen "$root/scripts/bootstrap.sh"
cd "$root"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
