#!/usr/bin/env bash
# Install what the demo needs (into .venv), then expand the shipped demo generator on the CPU.
# The last line printed is the absolute path of metrics.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python demo.py "$@"
