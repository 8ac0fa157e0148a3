#!/usr/bin/env bash
# Create .venv, install requirements.txt (the pinned versions) and the project itself (`pip install -e .`, which
# adds the `distill-lens` command); a no-op when neither file changed since the last install.
# Sourced by run.sh and test.sh. Uses python3 (3.11 here: `pip install torch==2.13.0` takes the CPU build on disk).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing requirements.txt (first time: a minute or two)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt"
  # --no-deps: requirements.txt above is the lock; pyproject.toml's looser list must not pull another torch build.
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
  echo "$WANT" > "$STAMP"
fi
# Short dataset names (ag_news, imdb, ...) resolve to this folder of hub-layout copies when it exists.
if [ -z "${DISTILL_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data" ]; then
  export DISTILL_DATA_DIR="$(cd "$ROOT/../shared/data" && pwd)"
fi
export TOKENIZERS_PARALLELISM=false
