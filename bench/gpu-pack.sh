#!/usr/bin/env bash
# Builds everything the GPU benchmark runs into one folder, so that it can
# run on a GPU machine that has neither a Rust toolchain nor package access:
#
#   bench/gpu-pack.sh [DEST]        # default: bench/.work/gpu-bundle
#
#   DEST/bin/      tritonrs, raw_onnxruntime and loadgen built with
#                  --features cuda, and perf_analyzer (bench/setup.sh)
#   DEST/lib/      the onnxruntime-gpu 1.31.1 library with its CUDA provider
#                  (scripts/fetch-onnxruntime.sh --gpu)
#   DEST/pa-lib/   libcudart.so.12 and libb64.so.0d, which perf_analyzer
#                  links against
#   DEST/build.json  the build facts for BENCHMARKS.md (bench/meta.py)
#
# Then, on the GPU machine, in a checkout of the same commit:
# bench/gpu-run.sh DEST.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEST="${1:-$ROOT/bench/.work/gpu-bundle}"

bench/setup.sh
ORT_GPU_DIR="$(dirname "$(scripts/fetch-onnxruntime.sh --gpu)")"
read -r SERVER RAW LOADGEN <<<"$(bench/build.sh --features cuda)"

rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/pa-lib"
cp "$SERVER" "$DEST/bin/tritonrs"
cp "$RAW" "$DEST/bin/raw_onnxruntime"
cp "$LOADGEN" "$DEST/bin/loadgen"
cp bench/.work/perf_analyzer/bin/perf_analyzer "$DEST/bin/"
# TensorRT's provider is left out: the benchmark uses the CUDA provider.
cp "$ORT_GPU_DIR/libonnxruntime.so.1.31.1" "$ORT_GPU_DIR/libonnxruntime_providers_shared.so" \
    "$ORT_GPU_DIR/libonnxruntime_providers_cuda.so" "$DEST/lib/"
cp bench/.work/perf_analyzer/lib/libcudart.so.12 "$DEST/pa-lib/"
cp "$(ldconfig -p | awk '/libb64\.so\.0d / {print $NF; exit}')" "$DEST/pa-lib/"
python3 bench/meta.py "$DEST/build.json" "$DEST/lib/libonnxruntime.so.1.31.1" --only-build
du -sh "$DEST" >&2
echo "$DEST"
