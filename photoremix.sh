#!/usr/bin/env bash
# Set up (first run) and run photoremix.
#   ./photoremix.sh                 start the service on 127.0.0.1:8000 (prints an API key)
#   ./photoremix.sh remix IN REF -o OUT ...   any other photoremix command
set -euo pipefail
root="$(cd "$(dirname "$0")" && pwd)"
"$root/scripts/bootstrap.sh"
if [ "$#" -eq 0 ]; then
    set -- serve
fi
exec "$root/.venv/bin/photoremix" "$@"
