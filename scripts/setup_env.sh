#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install requirements.txt,
# pinned to the tested versions in constraints.txt (pip install -e .[dev] -c constraints.txt is
# the same set, as a package). Re-running is cheap: the install is skipped while both files are
# unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($PYTHON --version)" >&2
  $PYTHON -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing requirements.txt (versions from constraints.txt) into .venv (first run only; torch is large)" >&2
  # (Some machines list local package folders pip cannot read; drop those warnings, keep the rest.)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt 2>&1 \
    | { grep -v '^WARNING: Location .* is ignored' || true; } >&2
  echo "$want" > "$stamp"
fi
