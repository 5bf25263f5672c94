#!/usr/bin/env python3
"""Writes the machine and version facts of a benchmark run as JSON.

    python bench/meta.py OUT.json ONNXRUNTIME_LIBRARY [--venv-python PY] [--build-facts BUILD.json]

Machine facts (CPU, memory, OS, GPU through nvidia-smi when there is one)
always come from the machine it runs on. Build facts (rustc, cargo, the git
commit, the locked crate versions) come from the checkout, or from
--build-facts when the binaries were built elsewhere (bench/gpu-pack.sh
writes that file next to them). --venv-python adds the package versions of
the MLServer virtual environment. Standard library only.
"""

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(*command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts():
    cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    meminfo = pathlib.Path("/proc/meminfo").read_text()
    gpus = run("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1),
        "cpu_flags_avx512": "avx512f" in cpuinfo,
        "cpu_flags_avx2": "avx2" in cpuinfo,
        "memory_kib": int(re.search(r"MemTotal:\s*(\d+)", meminfo).group(1)),
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "python": platform.python_version(),
        "gpus": [line.strip() for line in gpus.splitlines() if line.strip()],
    }


def build_facts():
    lock = (ROOT / "Cargo.lock").read_text()

    def locked(name):
        match = re.search(r'name = "' + re.escape(name) + r'"\nversion = "([^"]+)"', lock)
        return match.group(1) if match else None

    return {
        "rustc": run("rustc", "--version"),
        "cargo": run("cargo", "--version"),
        "git_commit": run("git", "rev-parse", "HEAD"),
        "git_dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
        "ort_crate": locked("ort"),
        "tonic_crate": locked("tonic"),
    }


def venv_facts(python):
    packages = {}
    for line in run(python, "-m", "pip", "freeze").splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            packages[name.lower()] = version
    return {
        "mlserver": packages.get("mlserver"),
        "onnxruntime_python": packages.get("onnxruntime"),
        "grpcio": packages.get("grpcio"),
        "uvloop": packages.get("uvloop"),
        "numpy": packages.get("numpy"),
        "venv_freeze": packages,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("onnxruntime_library")
    parser.add_argument("--venv-python")
    parser.add_argument("--build-facts", type=pathlib.Path)
    parser.add_argument("--only-build", action="store_true", help="write the build facts alone (for --build-facts)")
    args = parser.parse_args()
    build = json.loads(args.build_facts.read_text()) if args.build_facts else build_facts()
    if args.only_build:
        args.out.write_text(json.dumps(build, indent=1) + "\n")
        return
    meta = {**machine_facts(), **build, "onnxruntime_library": args.onnxruntime_library}
    meta["perf_analyzer"] = "tritonclient 2.50.0 wheel (manylinux1_x86_64), bin/perf_analyzer"
    if args.venv_python:
        meta.update(venv_facts(args.venv_python))
    args.out.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
