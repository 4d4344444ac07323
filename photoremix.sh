#!/usr/bin/env bash
# Set up (first run) and run photoremix: ./photoremix.sh remix INPUT REFERENCE -o OUT
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
"$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/photoremix" "$@"
