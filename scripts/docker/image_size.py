#!/usr/bin/env python3
"""Estimates the uncompressed size of the CPU image from its parts:

- the base image, debian:bookworm-slim (its size as the registry lists it);
- what `apt-get install ca-certificates curl` adds to it: the packages
  below, which the slim image lacks, sized by their Installed-Size in this
  machine's Debian 12 package index;
- /opt/tritonrs, measured on the staged files.

Usage: image_size.py STAGED_OPT_TRITONRS
"""

import pathlib
import re
import subprocess
import sys

BASE_IMAGE = "debian:bookworm-slim"
BASE_IMAGE_MB = 74.8
LIMIT_MB = 150

# Packages that curl and ca-certificates bring into debian:bookworm-slim
# (their dependencies that the slim image does not already have).
ADDED_PACKAGES = [
    "ca-certificates", "curl", "libbrotli1", "libcom-err2", "libcurl4", "libgssapi-krb5-2", "libk5crypto3",
    "libkeyutils1", "libkrb5-3", "libkrb5support0", "libldap-2.5-0", "libnghttp2-14", "libpsl5", "librtmp1",
    "libsasl2-2", "libsasl2-modules-db", "libssh2-1", "libssl3", "openssl",
]


def installed_size_kib(package):
    shown = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"^Installed-Size: (\d+)", shown, re.MULTILINE)
    if match is None:
        sys.exit(f"apt-cache knows no package {package}; is this a Debian 12 machine with a package index?")
    return int(match.group(1))


def main():
    staged = pathlib.Path(sys.argv[1])
    server_mb = sum(path.stat().st_size for path in staged.rglob("*") if path.is_file()) / 1e6
    packages_mb = sum(installed_size_kib(package) for package in ADDED_PACKAGES) * 1024 / 1e6
    total = BASE_IMAGE_MB + packages_mb + server_mb
    print(f"expected CPU image size: {total:.1f} MB uncompressed")
    print(f"  {BASE_IMAGE}: {BASE_IMAGE_MB:.1f} MB")
    print(f"  ca-certificates, curl and their libraries: {packages_mb:.1f} MB ({len(ADDED_PACKAGES)} packages)")
    print(f"  /opt/tritonrs (server binary and ONNX Runtime): {server_mb:.1f} MB")
    if total >= LIMIT_MB:
        sys.exit(f"the CPU image would be {total:.1f} MB, over the {LIMIT_MB} MB budget")


if __name__ == "__main__":
    main()
