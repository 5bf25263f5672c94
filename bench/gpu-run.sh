#!/usr/bin/env bash
# The benchmark's GPU run: W2 (the MLP) on one KIND_GPU instance with the
# CUDA execution provider, against the raw in-process limit on the same GPU,
# with the binaries and libraries that bench/gpu-pack.sh put into BUNDLE:
#
#   bench/gpu-run.sh BUNDLE [extra run_bench.py options]
#
# Needs on the GPU machine: python3 with numpy and onnx (for
# bench/generate_workloads.py), the NVIDIA driver, and CUDA 13 with cuDNN 9
# (onnxruntime-gpu 1.31.1 is built for them), either on the loader path or
# as pip's nvidia-* packages of that python3, whose lib folders are added to
# LD_LIBRARY_PATH here. MLServer is not part of this run: its runtime uses
# the CPU onnxruntime package. Results go to
# bench/.work/results/<UTC time>-gpu/ (results.json, report.md, logs/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ $# -lt 1 || ! -d "$1/bin" ]]; then
    echo "usage: bench/gpu-run.sh BUNDLE [run_bench.py options] (BUNDLE from bench/gpu-pack.sh)" >&2
    exit 2
fi
BUNDLE="$(cd "$1" && pwd)"
shift
WORK="$ROOT/bench/.work"
PYTHON="${PYTHON:-python3}"

nvidia_libraries=$("$PYTHON" - <<'PY'
import importlib.util
import pathlib

spec = importlib.util.find_spec("nvidia")
folders = {str(library.parent) for location in (spec.submodule_search_locations if spec else [])
           for library in pathlib.Path(location).rglob("lib*.so*")}
print(":".join(sorted(folders)))
PY
)
export LD_LIBRARY_PATH="$nvidia_libraries${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ORT_DYLIB_PATH="$BUNDLE/lib/libonnxruntime.so.1.31.1"

"$PYTHON" bench/generate_workloads.py "$WORK/gpu-models" --gpu >/dev/null
OUT="$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)-gpu"
mkdir -p "$OUT"
"$PYTHON" bench/meta.py "$OUT/meta.json" "$ORT_DYLIB_PATH" --build-facts "$BUNDLE/build.json"

echo "[gpu-run] results in $OUT" >&2
"$PYTHON" bench/run_bench.py \
    --models "$WORK/gpu-models" \
    --out "$OUT" \
    --meta "$OUT/meta.json" \
    --systems raw,tritonrs \
    --workloads mlp \
    --server "$BUNDLE/bin/tritonrs" \
    --raw "$BUNDLE/bin/raw_onnxruntime" \
    --loadgen "$BUNDLE/bin/loadgen" \
    --perf-analyzer "$BUNDLE/bin/perf_analyzer" \
    --perf-analyzer-lib "$BUNDLE/pa-lib" \
    "$@"
"$PYTHON" bench/report.py "$OUT/results.json" >"$OUT/report.md"
echo "[gpu-run] report: $OUT/report.md" >&2
cat "$OUT/report.md"
