"""Requests to the models most tests use, and checks of their results, over
either protocol (see protocols.py).

`simple`: INT32 [batch, 16] INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 =
difference; most modules use it to prove the server still answers
correctly. `busy_loop`: INT64 [1] ITERATIONS -> COUNT after that many loop
steps, to keep a model busy for a chosen time; `batch_busy_loop` the same
with a batch dimension and a FP32 PAYLOAD echoed back."""

import queue
import threading
import time

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from protocols import GRPC, HTTP, as_numpy, connect, protocol_of
from protocols import RPC_TIMEOUT_S  # noqa: F401 (the tests import it from here)


def default_wire(client):
    """tritonclient's defaults for the client's protocol (binary tensors over HTTP)."""
    return GRPC if protocol_of(client) == "grpc" else HTTP


def simple_data(batch=1, seed=0):
    """Two INT32 [batch, 16] operands whose sum and difference cannot overflow."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**30), 2**30, size=(batch, 16), dtype=np.int32)
    b = rng.integers(-(2**30), 2**30, size=(batch, 16), dtype=np.int32)
    return a, b


def simple_inputs(a, b, wire=GRPC):
    return [wire.input("INPUT0", a, "INT32"), wire.input("INPUT1", b, "INT32")]


def check_simple_result(result, a, b):
    np.testing.assert_array_equal(as_numpy(result, "OUTPUT0"), a + b)
    np.testing.assert_array_equal(as_numpy(result, "OUTPUT1"), a - b)


def assert_simple_works(client, seed=12345):
    """The server is live and ready, and `simple` computes correctly."""
    assert client.is_server_live()
    assert client.is_server_ready()
    wire = default_wire(client)
    a, b = simple_data(batch=2, seed=seed)
    result = wire.infer(client, "simple", simple_inputs(a, b, wire))
    check_simple_result(result, a, b)


def busy_loop_inputs(iterations, wire=GRPC):
    return [wire.input("ITERATIONS", np.array([iterations], dtype=np.int64))]


def batch_busy_loop_inputs(iterations, payload, wire=GRPC):
    """One row of `batch_busy_loop`: it loops `iterations` times and echoes
    `payload` (a list of floats) as PAYLOAD_OUT."""
    return [
        wire.input("ITERATIONS", np.array([[iterations]], dtype=np.int64)),
        wire.input("PAYLOAD", np.array([payload], dtype=np.float32)),
    ]


def in_background(protocol, url, call, network_timeout=120):
    """Runs `call(client)` on a thread of its own with a client of its own
    (a tritonclient.http client belongs to the thread that made it), so a
    long request runs while the test goes on. Returns a queue that receives
    (finish time, result, error)."""
    finished = queue.Queue()
    options = {"network_timeout": network_timeout} if protocol == "http" else {}

    def run():
        with connect(protocol, url, **options) as client:
            try:
                result = call(client)
            except Exception as error:  # handed to the test, which decides
                finished.put((time.monotonic(), None, error))
            else:
                finished.put((time.monotonic(), result, None))

    threading.Thread(target=run, name=f"{protocol}-background-request", daemon=True).start()
    return finished


def collect_into(answers):
    """A tritonclient callback that puts each (result, error) into a queue."""
    return lambda result, error: answers.put((result, error))


def expect_rpc_error(call, status, *fragments):
    """Runs `call`, which must fail with gRPC `status` (for example
    "NOT_FOUND") and a message containing every fragment; returns the message."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    error = caught.value
    assert error.status() == f"StatusCode.{status}", f"{error.status()}: {error.message()}"
    message = error.message()
    for fragment in fragments:
        assert fragment in message, f"expected {fragment!r} in {message!r}"
    return message
