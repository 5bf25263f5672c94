#!/bin/sh
# Finishes the image layout under ROOT (/ in the image, a scratch folder in
# CI): `tritonserver` and `tritonrs` on the PATH, so container specs
# written for Triton (`command: ["tritonserver", ...]`) run unchanged, and
# an empty /models for a repository mounted there.
#
#   scripts/docker/install-layout.sh ROOT
set -eu
root=${1:?usage: install-layout.sh ROOT}

test -x "$root/opt/tritonrs/bin/tritonrs"
test -f "$root/opt/tritonrs/lib/libonnxruntime.so.1.31.1"
mkdir -p "$root/usr/local/bin" "$root/models"
# Relative links, so the layout also works under a scratch ROOT.
ln -sf ../../../opt/tritonrs/bin/tritonrs "$root/usr/local/bin/tritonserver"
ln -sf ../../../opt/tritonrs/bin/tritonrs "$root/usr/local/bin/tritonrs"
