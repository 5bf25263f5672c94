#!/usr/bin/env python3
"""Prints the folders of the CUDA libraries that pip's nvidia-* packages put
into this Python's site-packages, joined with ':' for LD_LIBRARY_PATH (empty
when there are none). onnxruntime-gpu's CUDA provider loads CUDA and cuDNN
from the loader path, and GPU machines often have them only as those
packages. Used by bench/gpu-run.sh and scripts/gpu-check.py."""

import importlib.util
import pathlib


def nvidia_library_path() -> str:
    spec = importlib.util.find_spec("nvidia")
    locations = spec.submodule_search_locations if spec else []
    folders = {str(library.parent) for location in locations for library in pathlib.Path(location).rglob("lib*.so*")}
    return ":".join(sorted(folders))


if __name__ == "__main__":
    print(nvidia_library_path())
