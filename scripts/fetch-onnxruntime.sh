#!/usr/bin/env bash
# Puts the ONNX Runtime shared library into a folder, taking it from the
# official wheel on PyPI (pip is the only download channel we use):
#
#   scripts/fetch-onnxruntime.sh [--gpu] [DEST]
#
# DEST defaults to .deps/onnxruntime/lib (.deps/onnxruntime-gpu/lib with
# --gpu), where the server looks for it in a checkout. Prints the library's
# path. Does nothing if the library is already there.
set -euo pipefail

version=1.31.1
package=onnxruntime
variant=onnxruntime
if [ "${1:-}" = "--gpu" ]; then
  package=onnxruntime-gpu
  variant=onnxruntime-gpu
  shift
fi
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.deps/$variant/lib}
library=$dest/libonnxruntime.so.$version

if [ -f "$library" ]; then
  echo "$library"
  exit 0
fi

arch=$(uname -m)
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
# The library inside the wheel does not depend on the Python version, so ask
# for one fixed wheel whatever Python runs pip.
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform "manylinux_2_28_$arch" --platform "manylinux_2_27_$arch" --platform "manylinux_2_17_$arch" \
  --dest "$download" "$package==$version" >&2

mkdir -p "$dest"
python3 - "$download" "$dest" <<'PY'
import pathlib
import sys
import zipfile

download, dest = map(pathlib.Path, sys.argv[1:])
(wheel,) = download.glob("*.whl")
with zipfile.ZipFile(wheel) as archive:
    for member in archive.namelist():
        name = pathlib.PurePosixPath(member).name
        if member.startswith("onnxruntime/capi/") and name.startswith("libonnxruntime"):
            (dest / name).write_bytes(archive.read(member))
PY
test -f "$library"
echo "$library"
