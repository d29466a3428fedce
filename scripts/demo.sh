#!/usr/bin/env bash
# Sets up (if needed) and runs the demo on the bundled real sample data; ends by itself with a
# summary and a report under runs/demo (options: `anchord demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/anchord demo "$@"
