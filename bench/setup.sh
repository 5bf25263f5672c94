#!/usr/bin/env bash
# Installs the benchmark's tools into the git-ignored bench/.work/, from the
# package registries only, with their ordinary clients:
#   - perf_analyzer, by scripts/fetch-perf-analyzer.sh: the binary inside
#     the tritonclient==2.50.0 wheel, with the libraries it links against;
#   - a Python 3.11 virtual environment with Seldon MLServer 1.7.1 and
#     onnxruntime 1.31.1 (the same release as the server's library), plus
#     onnx and numpy for bench/generate_workloads.py.
# Idempotent: finished steps leave a stamp file and are skipped next time.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${BENCH_WORK:-$BENCH_DIR/.work}"
PYTHON="${PYTHON:-python3}"
MLSERVER_VERSION=1.7.1
ONNXRUNTIME_VERSION=1.31.1
ONNX_VERSION=1.19.1
NUMPY_VERSION=2.4.6
# MLServer 1.7.1's inference workers die at start with uvloop >= 0.22
# ("There is no current event loop"; SeldonIO/MLServer issue 2286).
UVLOOP_VERSION=0.21.0

mkdir -p "$WORK"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- perf_analyzer --------------------------------------------------------
PA_DIR="$WORK/perf_analyzer"
"$BENCH_DIR/../scripts/fetch-perf-analyzer.sh" "$PA_DIR" >/dev/null

# --- MLServer virtual environment -----------------------------------------
VENV="$WORK/venv"
if [[ ! -f "$VENV/.done" ]]; then
    log "virtual environment with mlserver==$MLSERVER_VERSION, onnxruntime==$ONNXRUNTIME_VERSION"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "mlserver==$MLSERVER_VERSION" "onnxruntime==$ONNXRUNTIME_VERSION" \
        "onnx==$ONNX_VERSION" "numpy==$NUMPY_VERSION" \
        "uvloop==$UVLOOP_VERSION"
    touch "$VENV/.done"
fi
log "ready: $PA_DIR/bin/perf_analyzer, $VENV"
