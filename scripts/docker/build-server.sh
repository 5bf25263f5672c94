#!/usr/bin/env bash
# Builds the release binary from the locked dependency set and puts it at
# DEST/bin/tritonrs:
#
#   scripts/docker/build-server.sh DEST [FEATURES]
#
# FEATURES is a cargo feature list, e.g. "cuda" for the GPU image. The
# Dockerfile's build stages run this, and so does CI (scripts/check-image.sh).
set -euo pipefail
dest=${1:?usage: build-server.sh DEST [FEATURES]}
features=${2:-}
cd "$(dirname "$0")/../.."

cargo build --release --locked ${features:+--features "$features"}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$dest/bin"
install -m 0755 "$target_dir/release/tritonrs" "$dest/bin/tritonrs"
echo "$dest/bin/tritonrs"
