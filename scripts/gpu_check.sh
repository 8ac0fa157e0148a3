#!/usr/bin/env bash
# The GPU check, in one command, on a machine with a GPU (about 5-8 minutes on one recent GPU):
#   bash scripts/gpu_check.sh [OUT.json]     # default OUT: artifacts/gpu_check/<time>.json
# Trains the quick preset end to end, benches its models on the GPU (--device cuda), measures a bert-base-shaped
# model's training throughput at batch 64 and 256 against a bare bf16 loop, times test-set scoring, and writes every
# figure to one JSON file, whose path it prints last. What each figure is: docs/speed.md, "On a GPU".
# Needs the project's requirements with a CUDA build of torch (see requirements.txt); no internet: the quick
# preset's teacher is packaged and its data is read from $DISTILL_DATA_DIR (../shared/data when that folder exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PY" ]; then
  PY="$(command -v python3)"
fi
if [ -z "${DISTILL_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data" ]; then
  export DISTILL_DATA_DIR="$(cd "$ROOT/../shared/data" && pwd)"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${1:-$ROOT/artifacts/gpu_check/$(date +%Y%m%d-%H%M%S).json}"
exec "$PY" -m distill_core.bench.gpu_check --out "$OUT"
