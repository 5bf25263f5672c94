# Shared by bench/gpu-run.sh and bench/pinned-run.sh, which source it: both
# run the benchmark from a bundle of bench/gpu-pack.sh on a machine without
# a Rust toolchain. After `source`, the bundle's path is in BUNDLE (the
# script's first argument, shifted off), the ONNX Runtime library is set,
# and `run_from_bundle` runs run_bench.py and the report.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ $# -lt 1 || ! -d "$1/bin" ]]; then
    echo "usage: $0 BUNDLE [run_bench.py options] (BUNDLE from bench/gpu-pack.sh)" >&2
    exit 2
fi
BUNDLE="$(cd "$1" && pwd)"
shift
WORK="$ROOT/bench/.work"
PYTHON="${PYTHON:-python3}"
export ORT_DYLIB_PATH="$BUNDLE/lib/libonnxruntime.so.1.31.1"

# run_from_bundle KIND MODELS [run_bench.py options]: this server and the raw
# limit on the model repositories in MODELS (from generate_workloads.py),
# results in bench/.work/results/<UTC time>-KIND/ (results.json, report.md,
# logs/). The binaries are the bundle's unless the options name others.
run_from_bundle() {
    local kind="$1" models="$2"
    shift 2
    local out
    out="$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)-$kind"
    mkdir -p "$out"
    "$PYTHON" bench/meta.py "$out/meta.json" "$ORT_DYLIB_PATH" --build-facts "$BUNDLE/build.json"
    echo "[$kind] results in $out" >&2
    "$PYTHON" bench/run_bench.py \
        --models "$models" \
        --out "$out" \
        --meta "$out/meta.json" \
        --systems raw,tritonrs \
        --server "$BUNDLE/bin/tritonrs" \
        --raw "$BUNDLE/bin/raw_onnxruntime" \
        --loadgen "$BUNDLE/bin/loadgen" \
        --perf-analyzer "$BUNDLE/bin/perf_analyzer" \
        --perf-analyzer-lib "$BUNDLE/pa-lib" \
        "$@"
    "$PYTHON" bench/report.py "$out/results.json" >"$out/report.md"
    echo "[$kind] report: $out/report.md" >&2
    cat "$out/report.md"
}
