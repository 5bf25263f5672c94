#!/usr/bin/env bash
# Builds the server (release) and serves the example model repository on
# the standard ports (HTTP 8000, gRPC 8001). Fetches the ONNX Runtime library from PyPI
# into .deps/ first if it is not there. Extra arguments go to the server:
#   scripts/serve-example.sh --grpc-port=9001 --log-verbose=1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-onnxruntime.sh >/dev/null
cargo build --release --locked
exec target/release/tritonrs --model-repository=examples/model_repository "$@"
