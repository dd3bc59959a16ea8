#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install requirements.txt.
# Re-running is cheap: the install is skipped while requirements.txt is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($PYTHON --version)" >&2
  $PYTHON -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing requirements.txt into .venv (first run only; torch is large)" >&2
  # (Some machines list local package folders pip cannot read; drop those warnings, keep the rest.)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 \
    | { grep -v '^WARNING: Location .* is ignored' || true; } >&2
  echo "$want" > "$stamp"
fi
