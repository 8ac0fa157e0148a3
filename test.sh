#!/usr/bin/env bash
# Set up, then run the test suite (tiny random models, no downloads; a few minutes on 2 cores).
# The browser test needs Debian's chromium (`apt-get install chromium`); without it, it is skipped.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
