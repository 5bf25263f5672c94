"""Requests to the models most tests use, and checks of their results.

`simple`: INT32 [batch, 16] INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 =
difference; most modules use it to prove the server still answers
correctly. `busy_loop`: INT64 [1] ITERATIONS -> COUNT after that many loop
steps, to keep a model busy for a chosen time."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

RPC_TIMEOUT_S = 20


def simple_data(batch=1, seed=0):
    """Two INT32 [batch, 16] operands whose sum and difference cannot overflow."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-(2**30), 2**30, size=(batch, 16), dtype=np.int32)
    b = rng.integers(-(2**30), 2**30, size=(batch, 16), dtype=np.int32)
    return a, b


def simple_inputs(a, b):
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = grpcclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def check_simple_result(result, a, b):
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def assert_simple_works(client, seed=12345):
    """The server is live and ready, and `simple` computes correctly."""
    assert client.is_server_live()
    assert client.is_server_ready()
    a, b = simple_data(batch=2, seed=seed)
    result = client.infer("simple", simple_inputs(a, b), client_timeout=RPC_TIMEOUT_S)
    check_simple_result(result, a, b)


def busy_loop_inputs(iterations):
    data = np.array([iterations], dtype=np.int64)
    return [grpcclient.InferInput("ITERATIONS", [1], "INT64").set_data_from_numpy(data)]


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
