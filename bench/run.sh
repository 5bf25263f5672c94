#!/usr/bin/env bash
# The whole benchmark in one run (see BENCHMARKS.md):
#
#   bench/run.sh [--quick] [extra run_bench.py options]
#
#   1. bench/setup.sh: perf_analyzer and the MLServer virtual environment
#      into the git-ignored bench/.work/ (package registries only), and
#      scripts/fetch-onnxruntime.sh: the server's ONNX Runtime library;
#   2. bench/build.sh: release builds of the server and of the two bench
#      binaries;
#   3. bench/generate_workloads.py: the model repositories, into
#      bench/.work/models/;
#   4. bench/run_bench.py: raw limit, this server, MLServer, 2 repetitions;
#   5. bench/report.py: the Markdown tables, next to results.json in
#      bench/.work/results/<UTC time>/.
#
# --quick makes one short repetition (a smoke test of the whole chain; its
# figures are not for publishing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$ROOT/bench/.work"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

EXTRA=()
for argument in "$@"; do
    if [[ "$argument" == "--quick" ]]; then
        EXTRA+=(--repetitions 1 --duration 1.5 --warmup 0.5 --raw-duration 0.5 --pa-interval-ms 500 --pa-max-trials 4)
    else
        EXTRA+=("$argument")
    fi
done

bench/setup.sh
VENV="$WORK/venv"
# The ONNX Runtime library the server and the raw limit load (a no-op when
# .deps/onnxruntime/lib already has it).
scripts/fetch-onnxruntime.sh >/dev/null

read -r SERVER RAW LOADGEN <<<"$(bench/build.sh)"

"$VENV/bin/python" bench/generate_workloads.py "$WORK/models" >/dev/null

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$WORK/results/$RUN_ID"
mkdir -p "$OUT"

# Machine and versions, for BENCHMARKS.md.
ORT_LIBRARY="$(readlink -f .deps/onnxruntime/lib/libonnxruntime.so.1.31.1 2>/dev/null || true)"
"$VENV/bin/python" bench/meta.py "$OUT/meta.json" "$ORT_LIBRARY" --venv-python "$VENV/bin/python"

echo "[run] results in $OUT" >&2
"$VENV/bin/python" bench/run_bench.py \
    --models "$WORK/models" \
    --out "$OUT" \
    --meta "$OUT/meta.json" \
    --server "$SERVER" \
    --raw "$RAW" \
    --loadgen "$LOADGEN" \
    --perf-analyzer "$WORK/perf_analyzer/bin/perf_analyzer" \
    --perf-analyzer-lib "$WORK/perf_analyzer/lib" \
    --mlserver "$VENV/bin/mlserver" \
    --mlserver-runtime "$ROOT/bench/mlserver" \
    "${EXTRA[@]}"
"$VENV/bin/python" bench/report.py "$OUT/results.json" >"$OUT/report.md"
echo "[run] report: $OUT/report.md" >&2
cat "$OUT/report.md"
