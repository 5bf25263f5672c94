#!/usr/bin/env bash
# Installs the benchmark's tools into the git-ignored bench/.work/, from the
# package registries only, with their ordinary clients:
#   - perf_analyzer: the binary inside the tritonclient==2.50.0 wheel
#     (manylinux1_x86_64), with libb64 (Debian) and libcudart.so.12 (the
#     nvidia-cuda-runtime-cu12 wheel) that it links against;
#   - a Python 3.11 virtual environment with Seldon MLServer 1.7.1 and
#     onnxruntime 1.31.1 (the same release as the server's library), plus
#     onnx and numpy for bench/generate_workloads.py.
# Idempotent: finished steps leave a stamp file and are skipped next time.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${BENCH_WORK:-$BENCH_DIR/.work}"
PYTHON="${PYTHON:-python3}"
TRITONCLIENT_VERSION=2.50.0
CUDART_VERSION=12.4.127
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
if [[ ! -f "$PA_DIR/.done" ]]; then
    log "perf_analyzer from tritonclient==$TRITONCLIENT_VERSION"
    if ! ldconfig -p | grep -q 'libb64.so.0d'; then
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
        else
            log "libb64-0d is missing: run 'sudo apt-get install -y libb64-0d'"
            exit 1
        fi
    fi
    rm -rf "$PA_DIR" && mkdir -p "$PA_DIR/wheels" "$PA_DIR/bin" "$PA_DIR/lib"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
        --python-version 3.11 --dest "$PA_DIR/wheels" "tritonclient==$TRITONCLIENT_VERSION"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        --python-version 3.11 --dest "$PA_DIR/wheels" "nvidia-cuda-runtime-cu12==$CUDART_VERSION"
    "$PYTHON" - "$PA_DIR" <<'PY'
import pathlib, stat, sys, zipfile
root = pathlib.Path(sys.argv[1])
for wheel in sorted((root / "wheels").glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.endswith("/data/bin/perf_analyzer"):
                target = root / "bin" / "perf_analyzer"
            elif "/lib/libcudart.so" in name:
                target = root / "lib" / base
            else:
                continue
            target.write_bytes(archive.read(name))
            target.chmod(target.stat().st_mode | stat.S_IXUSR)
PY
    rm -rf "$PA_DIR/wheels"
    LD_LIBRARY_PATH="$PA_DIR/lib" "$PA_DIR/bin/perf_analyzer" --version >/dev/null 2>&1 ||
        LD_LIBRARY_PATH="$PA_DIR/lib" "$PA_DIR/bin/perf_analyzer" --help >/dev/null
    touch "$PA_DIR/.done"
fi

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
