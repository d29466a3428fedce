#!/usr/bin/env bash
# Sets up (if needed) and runs the demo on the bundled real sample data; ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/anchord run --config scripts/demo.toml "$@"
