#!/usr/bin/env bash
# The main job on the offline default: set up, train the `quick` run unless a complete one exists,
# then open the dashboard (http://localhost:8501).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
.venv/bin/distill-lens train --preset quick --unless-complete "$@"
exec .venv/bin/streamlit run dashboard.py
