#!/usr/bin/env bash
# The CPU benchmark with the server and the raw limit pinned to a few cores
# and the load generators to the others, on a machine with cores to spare:
# it shows what the server does when the generator's own CPU does not come
# out of the server's cores, as it does on the project's 2-core machine.
#
#   SERVER_CPUS=0,1 GENERATOR_CPUS=2-15 bench/pinned-run.sh BUNDLE [run_bench.py options]
#
# BUNDLE comes from bench/gpu-pack.sh (its binaries and ONNX Runtime library
# run on the CPU as well; no GPU is used here). SERVER_CPUS defaults to 0,1
# (the project machine's 2 cores), GENERATOR_CPUS to every other core. The
# server and the raw limit size their ONNX Runtime thread pools from the
# cores they may run on, so both get as many intra-op threads as
# SERVER_CPUS has cores. Needs python3 with numpy and onnx and util-linux's
# taskset. MLServer is not part of this run. Results go to
# bench/.work/results/<UTC time>-pinned/ (results.json, report.md, logs/).
# shellcheck source=bench/bundle-run.sh
source "$(dirname "${BASH_SOURCE[0]}")/bundle-run.sh"

SERVER_CPUS="${SERVER_CPUS:-0,1}"
if [[ -z "${GENERATOR_CPUS:-}" ]]; then
    cores="$(nproc --all)"
    if ((cores < 3)); then
        echo "pinned-run: $cores core(s) here; set SERVER_CPUS and GENERATOR_CPUS" >&2
        exit 2
    fi
    GENERATOR_CPUS="2-$((cores - 1))"
fi

# run_bench.py starts each program by path and stops it by PID: a wrapper
# that execs under taskset keeps both.
PINNED="$WORK/pinned-bin"
mkdir -p "$PINNED"
pin() {
    printf '#!/bin/sh\nexec taskset -c %s %s "$@"\n' "$2" "$BUNDLE/bin/$1" >"$PINNED/$1"
    chmod +x "$PINNED/$1"
}
pin tritonrs "$SERVER_CPUS"
pin raw_onnxruntime "$SERVER_CPUS"
pin loadgen "$GENERATOR_CPUS"
pin perf_analyzer "$GENERATOR_CPUS"

"$PYTHON" bench/generate_workloads.py "$WORK/models" >/dev/null
echo "[pinned] server on CPUs $SERVER_CPUS, generators on $GENERATOR_CPUS" >&2
run_from_bundle pinned "$WORK/models" \
    --server "$PINNED/tritonrs" \
    --raw "$PINNED/raw_onnxruntime" \
    --loadgen "$PINNED/loadgen" \
    --perf-analyzer "$PINNED/perf_analyzer" \
    "$@"
