#!/usr/bin/env bash
# Runs every test of the project, the way CI does:
#   formatting and lints, the committed models against their generator,
#   Rust unit and integration tests (the real binary over gRPC and HTTP),
#   the Python tests with Triton's own client and load generator, curl and
#   grpcurl, the deployment files' linters, and the Docker image's build
#   steps.
# Installs what it needs into git-ignored folders: .deps/ (ONNX Runtime,
# grpcurl, perf_analyzer), .venv/ (Python packages from
# tests/python/requirements.txt) and tests/azurite/node_modules/ (the Azure
# Storage emulator, from npm); and perf_analyzer's libb64 with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "fetching ONNX Runtime, grpcurl and perf_analyzer"
scripts/fetch-onnxruntime.sh
scripts/fetch-grpcurl.sh
scripts/fetch-perf-analyzer.sh

step "preparing the Python environment (.venv)"
if ! cmp -s tests/python/requirements.txt .venv/installed-requirements.txt; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r tests/python/requirements.txt
  cp tests/python/requirements.txt .venv/installed-requirements.txt
fi

step "preparing the Azure Storage emulator (tests/azurite, npm)"
if ! cmp -s tests/azurite/package-lock.json tests/azurite/node_modules/.installed-lock.json; then
  (cd tests/azurite && npm ci --no-audit --no-fund --loglevel=error)
  cp tests/azurite/package-lock.json tests/azurite/node_modules/.installed-lock.json
fi

step "checking formatting, lints and generated models"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --all-targets --features cuda -- -D warnings
.venv/bin/python scripts/generate_models.py --check

step "Rust unit and integration tests"
cargo test --locked

step "Rust tests again with the cuda feature (GPU code built, CPU tests run)"
cargo test --locked --features cuda

step "Python tests (tritonclient, perf_analyzer, grpcurl, curl, cloud platforms, examples)"
# The custom operator library that test_custom_operations.py loads, and the
# stand-ins for NVIDIA's libraries of test_gpu_metrics.py and
# test_cuda_shared_memory.py.
cargo build --locked --example custom_op_library --example fake_nvml --example fake_cuda
TRITONRS_BIN=target/debug/tritonrs .venv/bin/python -m pytest tests/python -q

step "deployment files: hadolint, kubernetes-validate, actionlint"
scripts/check-deploy.sh

step "the image build steps, run without Docker, and the staged image"
scripts/check-image.sh
