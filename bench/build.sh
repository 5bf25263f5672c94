#!/usr/bin/env bash
# Release builds of the server and of the two bench binaries; prints their
# three paths on one line (server, raw_onnxruntime, loadgen):
#
#   bench/build.sh [cargo options, e.g. --features cuda]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "[build] release: tritonrs, raw_onnxruntime, loadgen $*" >&2
cargo build --release --quiet --bin tritonrs "$@"
server="${CARGO_TARGET_DIR:-target}/release/tritonrs"
benches=$(cargo bench --no-run --quiet --bench raw_onnxruntime --bench loadgen --message-format=json "$@" |
    python3 -c '
import json, sys
found = {}
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable"):
        found[message["target"]["name"]] = message["executable"]
print(found["raw_onnxruntime"], found["loadgen"])')
echo "$(realpath "$server") $benches"
