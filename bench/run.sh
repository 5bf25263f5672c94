#!/usr/bin/env bash
# The whole benchmark in one run (see BENCHMARKS.md):
#
#   bench/run.sh [--quick] [extra run_bench.py options]
#
#   1. bench/setup.sh: perf_analyzer and the MLServer virtual environment
#      into the git-ignored bench/.work/ (package registries only), and
#      scripts/fetch-onnxruntime.sh: the server's ONNX Runtime library;
#   2. release builds of the server and of the two bench binaries;
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

echo "[run] building (release)" >&2
cargo build --release --quiet --bin tritonrs
executables=$(cargo bench --no-run --quiet --bench raw_onnxruntime --bench loadgen --message-format=json |
    "$VENV/bin/python" -c '
import json, sys
found = {}
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        found[message["target"]["name"]] = message["executable"]
print(found["raw_onnxruntime"], found["loadgen"])')
read -r RAW LOADGEN <<<"$executables"

"$VENV/bin/python" bench/generate_workloads.py "$WORK/models" >/dev/null

RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$WORK/results/$RUN_ID"
mkdir -p "$OUT"

# Machine and versions, for BENCHMARKS.md.
ORT_LIBRARY="$(readlink -f .deps/onnxruntime/lib/libonnxruntime.so.1.31.1 2>/dev/null || true)"
"$VENV/bin/python" - "$OUT/meta.json" "$ORT_LIBRARY" <<'PY'
import json, os, platform, re, subprocess, sys
def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError:
        return ""
cpuinfo = open("/proc/cpuinfo").read()
meminfo = open("/proc/meminfo").read()
lock = open("Cargo.lock").read()
def locked(name):
    match = re.search(r'name = "' + re.escape(name) + r'"\nversion = "([^"]+)"', lock)
    return match.group(1) if match else None
venv_packages = {}
for line in run(os.path.join(os.path.dirname(sys.executable), "pip"), "freeze").splitlines():
    if "==" in line:
        name, version = line.split("==", 1)
        venv_packages[name.lower()] = version
meta = {
    "nproc": os.cpu_count(),
    "cpu_model": re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1),
    "cpu_flags_avx512": "avx512f" in cpuinfo,
    "cpu_flags_avx2": "avx2" in cpuinfo,
    "memory_kib": int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1)),
    "kernel": platform.release(),
    "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
    "rustc": run("rustc", "--version"),
    "cargo": run("cargo", "--version"),
    "git_commit": run("git", "rev-parse", "HEAD"),
    "git_dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
    "ort_crate": locked("ort"),
    "tonic_crate": locked("tonic"),
    "onnxruntime_library": sys.argv[2],
    "python": platform.python_version(),
    "mlserver": venv_packages.get("mlserver"),
    "onnxruntime_python": venv_packages.get("onnxruntime"),
    "grpcio": venv_packages.get("grpcio"),
    "uvloop": venv_packages.get("uvloop"),
    "numpy": venv_packages.get("numpy"),
    "perf_analyzer": "tritonclient 2.50.0 wheel (manylinux1_x86_64), bin/perf_analyzer",
    "venv_freeze": venv_packages,
}
open(sys.argv[1], "w").write(json.dumps(meta, indent=1) + "\n")
PY

echo "[run] results in $OUT" >&2
"$VENV/bin/python" bench/run_bench.py \
    --models "$WORK/models" \
    --out "$OUT" \
    --meta "$OUT/meta.json" \
    --server "$CARGO_TARGET_DIR/release/tritonrs" \
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
