#!/usr/bin/env python3
"""Checks, on a machine with an NVIDIA GPU, what CI cannot: how the server
built with `--features cuda` and the onnxruntime-gpu library places and runs
instance groups on a real GPU.

    python3 scripts/gpu-check.py BUNDLE      # BUNDLE from bench/gpu-pack.sh

It needs only the Python standard library, the bundle's `bin/tritonrs` and
`lib/`, the NVIDIA driver and CUDA 13 with cuDNN 9 (on the loader path or as
pip's nvidia-* packages of this Python). It serves copies of the example
`simple` model (INT32 sum and difference) with different instance groups,
and the identity test models of every datatype, from a temporary
repository, twice: once seeing the GPUs, once with
`CUDA_VISIBLE_DEVICES=` (a GPU image started without its GPUs), and
prints one line per check; the exit status is the number of failed checks.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests" / "python")]
from nvidia_libraries import nvidia_library_path  # noqa: E402
from server_process import EXAMPLE_MODELS, TEST_MODELS, ServerProcess, copy_model, server_args  # noqa: E402

SIMPLE = EXAMPLE_MODELS / "simple"

# Datatype -> values that survive a JSON round trip exactly, for the
# identity test models (no config: KIND_AUTO, so on the GPU here; ONNX
# Runtime runs on the CPU the kernels its CUDA provider lacks).
IDENTITY_VALUES = {
    "BOOL": [True, False, True],
    **{name: [0, 7, 100] for name in ("UINT8", "UINT16", "UINT32", "UINT64")},
    **{name: [-100, 0, 7] for name in ("INT8", "INT16", "INT32", "INT64")},
    **{name: [1.5, -2.0, 0.25] for name in ("FP16", "BF16", "FP32", "FP64")},
    "BYTES": ["a", "bc", ""],
}
LOAD_TIMEOUT_S = 120

# The example's config without its first line (the name), so that each
# copy can be renamed and given its own instance groups.
SIMPLE_BODY = "\n".join(
    line for line in (SIMPLE / "config.pbtxt").read_text().splitlines() if not line.startswith(("name:", "#"))
)

WARMUP = """model_warmup [ { name: "zeros" batch_size: 4 count: 2
  inputs { key: "INPUT0" value: { data_type: TYPE_INT32 dims: [ 16 ] zero_data: true } }
  inputs { key: "INPUT1" value: { data_type: TYPE_INT32 dims: [ 16 ] random_data: true } } } ]"""

# Model name -> what its config adds to the example's.
MODELS = {
    # No instance_group: Triton's default, KIND_AUTO.
    "auto": "",
    "gpu_options": """instance_group [ { count: 1, kind: KIND_GPU, gpus: [ 0 ] } ]
optimization { execution_accelerators { gpu_execution_accelerator: [
  { name: "cuda" parameters { key: "cudnn_conv_use_max_workspace" value: "1" }
                 parameters { key: "do_copy_in_default_stream" value: "true" } } ] } }
parameters { key: "gpu_mem_limit" value { string_value: "1073741824" } }
parameters { key: "arena_extend_strategy" value { string_value: "1" } }""",
    "gpu_warmup": "instance_group [ { count: 2, kind: KIND_GPU } ]\n" + WARMUP,
    "gpu_unknown_option": """instance_group [ { kind: KIND_GPU } ]
optimization { execution_accelerators { gpu_execution_accelerator: [
  { name: "cuda" parameters { key: "no_such_cuda_option" value: "1" } } ] } }""",
    "gpu_absent": "instance_group [ { kind: KIND_GPU, gpus: [ 1 ] } ]",
}


class Server(ServerProcess):
    """A server started as the Python tests start theirs, with JSON requests
    to its HTTP endpoint."""

    def request(self, path, body=None):
        """(HTTP status, parsed JSON body) of a GET, or a POST of `body`."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.http_url}{path}", data=data)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


class Checks:
    """Runs checks and counts the failures; a check that raises fails."""

    def __init__(self):
        self.failed = 0

    def check(self, name, outcome):
        """`outcome()` gives (passed, detail)."""
        try:
            passed, detail = outcome()
        except Exception as error:  # a broken answer is a failed check, not the end of the run
            passed, detail = False, f"{type(error).__name__}: {error}"
        self.failed += not passed
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {detail}", flush=True)


def write_repository(folder):
    for name, extra in MODELS.items():
        copy_model(SIMPLE, folder, name=name, config=f'name: "{name}"\n{SIMPLE_BODY}\n{extra}\n')
    for datatype in IDENTITY_VALUES:
        copy_model(TEST_MODELS / f"identity_{datatype.lower()}", folder)


def groups_of(server, model):
    """[(kind, count, gpus)] of the model's completed configuration."""
    _, config = server.request(f"/v2/models/{model}/config")
    return [(group["kind"], group["count"], group.get("gpus", [])) for group in config.get("instance_group", [])]


def infer_simple(server, model, rows=3):
    """Whether `rows` rows of sum and difference come back right, and how."""
    first = [[row * 100 + column for column in range(16)] for row in range(rows)]
    second = [[column - row for column in range(16)] for row in range(rows)]
    inputs = [
        {"name": name, "shape": [rows, 16], "datatype": "INT32", "data": data}
        for name, data in (("INPUT0", first), ("INPUT1", second))
    ]
    status, answer = server.request(f"/v2/models/{model}/infer", {"inputs": inputs})
    if status != 200:
        return False, f"HTTP {status}: {answer}"
    outputs = {output["name"]: output["data"] for output in answer["outputs"]}
    flat = [(a, b) for row_a, row_b in zip(first, second) for a, b in zip(row_a, row_b)]
    expected = {"OUTPUT0": [a + b for a, b in flat], "OUTPUT1": [a - b for a, b in flat]}
    return outputs == expected, f"{rows} rows of sum and difference {'right' if outputs == expected else 'WRONG'}"


def identity_round_trips(server, device):
    """Whether every datatype comes back unchanged from its identity model,
    whose instances all run on `device` ("KIND_GPU" or "KIND_CPU")."""
    wrong = []
    for datatype, values in IDENTITY_VALUES.items():
        model = f"identity_{datatype.lower()}"
        kinds = {kind for kind, _, _ in groups_of(server, model)}
        inputs = [{"name": "INPUT0", "shape": [1, len(values)], "datatype": datatype, "data": values}]
        status, answer = server.request(f"/v2/models/{model}/infer", {"inputs": inputs})
        returned = answer["outputs"][0]["data"] if status == 200 else answer
        if kinds != {device} or returned != values:
            wrong.append(f"{datatype} on {sorted(kinds)}: sent {values}, got {returned}")
    return not wrong, "; ".join(wrong) or f"{len(IDENTITY_VALUES)} datatypes unchanged on {device}"


def statistics_of(server, model):
    _, stats = server.request(f"/v2/models/{model}/stats")
    entry = stats["model_stats"][0]
    return int(entry["execution_count"]), int(entry["inference_count"])


def unavailable_reason(server, model):
    status, body = server.request(f"/v2/models/{model}")
    return status, (body or {}).get("error", "")


def gpu_processes():
    """PID -> MiB of the processes nvidia-smi lists as holding GPU memory
    (none without nvidia-smi)."""
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError:
        return {}
    return {int(line.split(",")[0]): int(line.split(",")[1]) for line in listing.splitlines() if line.strip()}


def groups_are(server, model, expected):
    groups = groups_of(server, model)
    return groups == expected, f"completed instance groups {groups}"


def statistics_are(server, model, expected):
    counts = statistics_of(server, model)
    return counts == expected, f"(execution_count, inference_count) {counts}"


def load_fails(server, model, fragment):
    status, reason = unavailable_reason(server, model)
    return status == 503 and fragment in reason, f"HTTP {status}: {reason}"


def with_gpus(checks, server):
    checks.check("KIND_AUTO on a GPU host", lambda: groups_are(server, "auto", [("KIND_GPU", 1, [0])]))
    checks.check("KIND_AUTO answers", lambda: infer_simple(server, "auto"))
    memory = gpu_processes().get(server.process.pid)
    checks.check("the server holds GPU memory", lambda: (memory is not None, f"nvidia-smi: {memory} MiB"))
    checks.check("every datatype through an identity model", lambda: identity_round_trips(server, "KIND_GPU"))
    checks.check("cuda accelerator and gpu_mem_limit options", lambda: infer_simple(server, "gpu_options"))
    checks.check(
        "model_warmup on 2 KIND_GPU instances (2 x count 2 of batch 4)",
        lambda: statistics_are(server, "gpu_warmup", (4, 16)),
    )
    checks.check("a request after warmup", lambda: infer_simple(server, "gpu_warmup", rows=2))
    checks.check("and its statistics", lambda: statistics_are(server, "gpu_warmup", (5, 18)))
    checks.check(
        "an unknown CUDA provider option fails the load",
        lambda: load_fails(server, "gpu_unknown_option", "no_such_cuda_option"),
    )
    checks.check("a group naming a GPU that is not there", lambda: load_fails(server, "gpu_absent", "GPU 1"))


def without_gpus(checks, server):
    checks.check("KIND_AUTO with CUDA_VISIBLE_DEVICES=", lambda: groups_are(server, "auto", [("KIND_CPU", 2, [])]))
    checks.check("KIND_AUTO answers on the CPU", lambda: infer_simple(server, "auto"))
    checks.check("every datatype on the CPU", lambda: identity_round_trips(server, "KIND_CPU"))
    checks.check(
        "no GPU memory held",
        lambda: (server.process.pid not in gpu_processes(), f"nvidia-smi lists {gpu_processes()}"),
    )
    checks.check(
        "KIND_GPU without a visible GPU",
        lambda: load_fails(server, "gpu_options", "GPU 0: the NVIDIA driver shows this server no GPU"),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=pathlib.Path, help="the folder bench/gpu-pack.sh wrote")
    args = parser.parse_args()
    binary = args.bundle / "bin" / "tritonrs"
    library = args.bundle / "lib" / "libonnxruntime.so.1.31.1"
    # Added to this process's environment by ServerProcess.
    env = {"LD_LIBRARY_PATH": ":".join(filter(None, [nvidia_library_path(), os.environ.get("LD_LIBRARY_PATH")]))}

    checks = Checks()
    with tempfile.TemporaryDirectory() as folder:
        repository = pathlib.Path(folder)
        write_repository(repository)
        for visible, run in ((None, with_gpus), ("", without_gpus)):
            server_env = env if visible is None else dict(env, CUDA_VISIBLE_DEVICES=visible)
            extra = [f"--backend-config=onnxruntime,library={library}", "--exit-on-error=false"]
            server = Server(server_args(repository, extra=extra), binary, server_env)
            try:
                server.wait_listening().wait_models_loaded(LOAD_TIMEOUT_S)
                run(checks, server)
            finally:
                code = server.stop(timeout=60)
                checks.check("clean exit", lambda: (code == 0, f"exit status {code}"))
                if checks.failed:
                    print("\n".join(server.lines[-40:]))
    print(f"{checks.failed} check(s) failed")
    return checks.failed


if __name__ == "__main__":
    sys.exit(main())
