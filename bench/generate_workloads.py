#!/usr/bin/env python3
"""Writes the benchmark's model repositories (deterministically).

    python bench/generate_workloads.py [OUT] [--gpu]   # default OUT: bench/.work/models

Two workloads, each as the same ONNX file in several repositories:

  W1 `simple`: Triton's example model, INT32 INPUT0, INPUT1 [16] ->
     OUTPUT0 = sum, OUTPUT1 = difference (a copy of
     examples/model_repository/simple/1/model.onnx). Almost no compute: it
     measures the serving overhead.
  W2 `mlp`: FP32 INPUT [256] -> Gemm 1024 -> Relu -> Gemm 1024 -> Relu ->
     Gemm 16 -> OUTPUT [16], dynamic batch dimension, weights drawn from a
     fixed seed (about 5.3 MB of FP32 weights).

Layout under OUT:

  triton/<w>_batching/     max_batch_size 32 with dynamic_batching
  triton/<w>_nobatching/   max_batch_size 32, no dynamic_batching
  mlserver/settings.json   MLServer's server settings (debug off, 127.0.0.1,
                           its default of one parallel inference worker)
  mlserver/<w>/            model-settings.json for bench/mlserver/runtime.py
                           with MLServer's adaptive batching (same limits)
  onnx/<w>.onnx            the ONNX files (the repositories hold copies)
  workloads.json           what was written, for the other scripts, with
                           reference outputs: a few inputs and the outputs
                           computed here with NumPy in float64, which
                           bench/run_bench.py compares the servers' answers to

Every server runs one execution instance per model (instance_group count 1,
KIND_CPU), so this server gives its single ONNX Runtime session all cores as
intra-op threads (cores / instances, src/backend/onnxruntime/session_options.rs);
the raw in-process limit and the MLServer runtime use the same thread count.
With --gpu the Triton models' instance group is one KIND_GPU instance on
GPU 0 instead (the CUDA execution provider; bench/gpu-run.sh), and the raw
limit runs on the same device.
"""

import argparse
import hashlib
import json
import os
import pathlib
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
SIMPLE_ONNX = ROOT / "examples" / "model_repository" / "simple" / "1" / "model.onnx"

OPSET = 17
IR_VERSION = 8
SEED = 20261122
MAX_BATCH_SIZE = 32
# How long the dynamic batcher (and MLServer's adaptive batcher) may hold the
# oldest request to let a batch grow. The same value for every server.
MAX_QUEUE_DELAY_US = 500
MLP_LAYERS = [256, 1024, 1024, 16]


def mlp_model() -> onnx.ModelProto:
    rng = np.random.RandomState(SEED)
    nodes, initializers = [], []
    previous = "INPUT"
    for index, (fan_in, fan_out) in enumerate(zip(MLP_LAYERS, MLP_LAYERS[1:])):
        # He initialisation; Gemm with transB = 1, the layout PyTorch exports.
        weight = (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [numpy_helper.from_array(weight, f"W{index}"), numpy_helper.from_array(bias, f"B{index}")]
        last = index == len(MLP_LAYERS) - 2
        gemm_out = "OUTPUT" if last else f"gemm{index}"
        nodes.append(helper.make_node("Gemm", [previous, f"W{index}", f"B{index}"], [gemm_out], transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"relu{index}"]))
            previous = f"relu{index}"
    graph = helper.make_graph(
        nodes,
        "mlp_256_1024_1024_16",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", MLP_LAYERS[0]])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", MLP_LAYERS[-1]])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tritonrs-bench-workloads"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


WORKLOADS = {
    "simple": {
        "inputs": [("INPUT0", "INT32", [16]), ("INPUT1", "INT32", [16])],
        "outputs": [("OUTPUT0", "INT32", [16]), ("OUTPUT1", "INT32", [16])],
    },
    "mlp": {
        "inputs": [("INPUT", "FP32", [MLP_LAYERS[0]])],
        "outputs": [("OUTPUT", "FP32", [MLP_LAYERS[-1]])],
    },
}


def reference_check(workload: str, model: onnx.ModelProto, rows: int = 3) -> dict:
    """Inputs of `rows` requests' worth and the outputs NumPy computes for them."""
    rng = np.random.RandomState(SEED + 1)
    if workload == "simple":
        a = rng.randint(-1000, 1000, (rows, 16))
        b = rng.randint(-1000, 1000, (rows, 16))
        return {"inputs": {"INPUT0": a.tolist(), "INPUT1": b.tolist()}, "outputs": {"OUTPUT0": (a + b).tolist(), "OUTPUT1": (a - b).tolist()}}
    weights = {tensor.name: numpy_helper.to_array(tensor).astype(np.float64) for tensor in model.graph.initializer}
    x = rng.standard_normal((rows, MLP_LAYERS[0])).astype(np.float32)
    y = x.astype(np.float64)
    for index in range(len(MLP_LAYERS) - 1):
        y = y @ weights[f"W{index}"].T + weights[f"B{index}"]
        if index < len(MLP_LAYERS) - 2:
            y = np.maximum(y, 0.0)
    return {"inputs": {"INPUT": x.tolist()}, "outputs": {"OUTPUT": y.tolist()}}


def triton_config(name: str, workload: str, batching: bool, gpu: bool) -> str:
    spec = WORKLOADS[workload]

    def tensors(items):
        return ",\n".join(
            f'  {{\n    name: "{n}"\n    data_type: TYPE_{t}\n    dims: [ {", ".join(map(str, d))} ]\n  }}'
            for n, t, d in items
        )

    text = (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {MAX_BATCH_SIZE}\n"
        f"input [\n{tensors(spec['inputs'])}\n]\n"
        f"output [\n{tensors(spec['outputs'])}\n]\n"
    )
    if gpu:
        text += "instance_group [ { count: 1, kind: KIND_GPU, gpus: [ 0 ] } ]\n"
    else:
        text += "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
    if batching:
        text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}\n}}\n"
    return text


def mlserver_settings(name: str, workload: str, threads: int) -> dict:
    spec = WORKLOADS[workload]
    return {
        "name": name,
        "implementation": "runtime.OnnxRuntimeModel",
        "max_batch_size": MAX_BATCH_SIZE,
        "max_batch_time": MAX_QUEUE_DELAY_US / 1e6,
        "parameters": {"uri": "./model.onnx", "extra": {"intra_op_num_threads": threads}},
        "inputs": [{"name": n, "datatype": t, "shape": [-1, *d]} for n, t, d in spec["inputs"]],
        "outputs": [{"name": n, "datatype": t, "shape": [-1, *d]} for n, t, d in spec["outputs"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default=str(ROOT / "bench" / ".work" / "models"))
    parser.add_argument("--gpu", action="store_true", help="KIND_GPU instance groups (GPU 0) for the Triton models")
    args = parser.parse_args()
    out = pathlib.Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "onnx").mkdir(parents=True)
    shutil.copyfile(SIMPLE_ONNX, out / "onnx" / "simple.onnx")
    models = {"simple": onnx.load(SIMPLE_ONNX), "mlp": mlp_model()}
    (out / "onnx" / "mlp.onnx").write_bytes(models["mlp"].SerializeToString(deterministic=True))

    # One instance per model: this server gives it all cores as intra-op
    # threads (cores / instances), and so do the raw limit and MLServer.
    threads = os.cpu_count() or 1
    summary = {
        "max_batch_size": MAX_BATCH_SIZE,
        "max_queue_delay_us": MAX_QUEUE_DELAY_US,
        "threads": threads,
        "instance_kind": "KIND_GPU" if args.gpu else "KIND_CPU",
    }
    summary["workloads"] = {}
    for workload in WORKLOADS:
        onnx_file = out / "onnx" / f"{workload}.onnx"
        for batching in (True, False):
            name = f"{workload}_{'batching' if batching else 'nobatching'}"
            directory = out / "triton" / name
            (directory / "1").mkdir(parents=True)
            shutil.copyfile(onnx_file, directory / "1" / "model.onnx")
            (directory / "config.pbtxt").write_text(triton_config(name, workload, batching, args.gpu))
        directory = out / "mlserver" / workload
        directory.mkdir(parents=True)
        shutil.copyfile(onnx_file, directory / "model.onnx")
        settings = mlserver_settings(workload, workload, threads)
        (directory / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        summary["workloads"][workload] = {
            "onnx": str(onnx_file),
            "sha256": hashlib.sha256(onnx_file.read_bytes()).hexdigest(),
            "inputs": WORKLOADS[workload]["inputs"],
            "outputs": WORKLOADS[workload]["outputs"],
            "reference": reference_check(workload, models[workload]),
        }
    # Server-wide MLServer settings; the ports come from MLSERVER_*_PORT.
    (out / "mlserver" / "settings.json").write_text(
        json.dumps({"debug": False, "host": "127.0.0.1", "parallel_workers": 1}, indent=2) + "\n"
    )
    (out / "workloads.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
