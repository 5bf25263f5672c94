"""ONNX Runtime's global thread pool, as Triton's backend config turns it
on (`--backend-config=onnxruntime,enable-global-threadpool=1` with
`intra_op_thread_count`): every session shares one pool instead of
starting threads of its own, which a process's thread count shows."""

import pathlib

from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from server_process import EXAMPLE_MODELS, copy_model

SIMPLE = EXAMPLE_MODELS / "simple"
MODELS = ("a", "b", "c")
# Each session would start 3 intra-op threads of its own.
OWN_THREADS = """
parameters { key: "intra_op_thread_count" value { string_value: "4" } }
instance_group [ { count: 2 kind: KIND_CPU } ]
"""
POOL = ["--backend-config=onnxruntime,enable-global-threadpool=1", "--backend-config=onnxruntime,intra_op_thread_count=2"]


def threads_of(server):
    return len(list(pathlib.Path(f"/proc/{server.pid}/task").iterdir()))


def serves(server, protocol):
    with server.client(protocol) as client:
        wire = default_wire(client)
        for model in MODELS:
            a, b = simple_data(seed=len(model))
            check_simple_result(wire.infer(client, model, simple_inputs(a, b, wire)), a, b)


def test_every_session_shares_the_global_pool(launch_server, protocol, tmp_path):
    for model in MODELS:
        config = (SIMPLE / "config.pbtxt").read_text().replace('"simple"', f'"{model}"') + OWN_THREADS
        copy_model(SIMPLE, tmp_path, model, config=config)
    own = launch_server(tmp_path)
    serves(own, protocol)
    pooled = launch_server(tmp_path, extra=POOL)
    serves(pooled, protocol)
    assert "global thread pool" in pooled.log
    # Six sessions with 3 threads of their own each, against one pool of 2
    # (the caller's thread and one more) that they share.
    assert threads_of(own) - threads_of(pooled) >= 12, (threads_of(own), threads_of(pooled))
