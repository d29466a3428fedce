#!/usr/bin/env bash
# Creates .venv and installs anchord with its test extra; a no-op when nothing changed.
# torch is pinned through constraints.txt so the CPU build on local disk is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ANCHORD_VENV:-.venv}
stamp_src=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.anchord-stamp" 2>/dev/null)" = "$stamp_src" ]; then
  exit 0
fi
echo "setting up $VENV (first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e '.[test]' >&2
echo "$stamp_src" > "$VENV/.anchord-stamp"
