#!/usr/bin/env bash
# Creates .venv and installs photoremix into it (editable), once per change of
# pyproject.toml. Sourced by ./photoremix.sh and ./test.sh; honours PIP_FIND_LINKS (CI
# points it at prebuilt wheels; without them pip compiles dlib, which takes ~20 minutes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${PHOTOREMIX_EXTRAS:-}"

find_python() {
  for candidate in python3.11 python3.12 python3.13 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "photoremix needs Python 3.11 or newer on PATH" >&2
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv" >&2
  "$(find_python)" -m venv "$venv"
fi
stamp="$venv/.photoremix-installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  echo "==> installing photoremix${extras:+[$extras]} (first run takes a while)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -e "$root${extras:+[$extras]}" >&2
  touch "$stamp"
fi
