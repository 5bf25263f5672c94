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

# shellcheck source=bench/bundle-run.sh
source "$(dirname "${BASH_SOURCE[0]}")/bundle-run.sh"

nvidia_libraries=$("$PYTHON" scripts/nvidia_libraries.py)
export LD_LIBRARY_PATH="$nvidia_libraries${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$PYTHON" bench/generate_workloads.py "$WORK/gpu-models" --gpu >/dev/null
run_from_bundle gpu "$WORK/gpu-models" --workloads mlp "$@"
