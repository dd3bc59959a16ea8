#!/usr/bin/env bash
# Install what the tests need (.venv, and the browser the viewer tests drive) and run the whole
# test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/install_browser.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
