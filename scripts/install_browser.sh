#!/usr/bin/env bash
# The viewer's browser tests (tests/viewer) drive Debian's Chromium through chromedriver.
# Installs both with apt-get when either is missing (needs root, as in CI); otherwise says how.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "The viewer's browser tests need Chromium and ChromeDriver: run 'sudo apt-get install chromium chromium-driver' (Debian/Ubuntu) and retry." >&2
    exit 1
fi
echo "Installing Debian's chromium and chromium-driver for the viewer's browser tests" >&2
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
