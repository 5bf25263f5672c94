"""Triton's system shared-memory extension with tritonclient's own
shared-memory helpers, over gRPC and HTTP: registering regions, inputs read
from them and outputs written into them, mixed with inputs sent in the
request, the errors a client can make, and the server's default of
refusing client shared memory (`--allow-client-shm`, as in Triton)."""

import os

import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from http_requests import expect_error_response, post
from model_requests import assert_simple_works, simple_data
from protocols import expect_error, module, server_metadata
from server_process import EXAMPLE_MODELS

TENSOR_BYTES = 16 * 4  # one row of simple's INT32 [16]


@pytest.fixture(scope="module")
def shm_server(request):
    """A server of the example models that lets clients use shared memory."""
    from server_process import server_args, start_server

    server = start_server(server_args(EXAMPLE_MODELS, extra=["--allow-client-shm=true"]))
    yield server
    assert server.stop() == 0, server.log


@pytest.fixture
def regions():
    """Creates shared-memory objects with tritonclient's helper (keys unique
    to this process) and destroys them after the test."""
    created = []

    def create(name, byte_size):
        handle = shm.create_shared_memory_region(name, f"/tritonrs-{os.getpid()}-{name}", byte_size)
        created.append(handle)
        return handle, f"/tritonrs-{os.getpid()}-{name}"

    yield create
    for handle in created:
        shm.destroy_shared_memory_region(handle)


def shm_inputs(protocol, region, offsets):
    """simple's two inputs, each in `region` at its offset."""
    inputs = []
    for name, offset in zip(("INPUT0", "INPUT1"), offsets, strict=True):
        tensor = module(protocol).InferInput(name, [1, 16], "INT32")
        tensor.set_shared_memory(region, TENSOR_BYTES, offset=offset)
        inputs.append(tensor)
    return inputs


def shm_outputs(protocol, region, offsets):
    outputs = []
    for name, offset in zip(("OUTPUT0", "OUTPUT1"), offsets, strict=True):
        output = module(protocol).InferRequestedOutput(name)
        output.set_shared_memory(region, TENSOR_BYTES, offset=offset)
        outputs.append(output)
    return outputs


def test_inputs_and_outputs_travel_through_shared_memory(shm_server, protocol, regions):
    a, b = simple_data(1, seed=5)
    input_handle, input_key = regions(f"in-{protocol}", 2 * TENSOR_BYTES)
    output_handle, output_key = regions(f"out-{protocol}", 2 * TENSOR_BYTES)
    shm.set_shared_memory_region(input_handle, [a, b])
    with shm_server.client(protocol) as client:
        client.unregister_system_shared_memory()
        client.register_system_shared_memory("in", input_key, 2 * TENSOR_BYTES)
        # A region may start inside its object: this one is the second half.
        client.register_system_shared_memory("out", output_key, TENSOR_BYTES, offset=0)
        client.register_system_shared_memory("out_high", output_key, TENSOR_BYTES, offset=TENSOR_BYTES)
        status = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
        names = sorted(status["regions"]) if protocol == "grpc" else sorted(region["name"] for region in status)
        assert names == ["in", "out", "out_high"]

        outputs = shm_outputs(protocol, "out", [0, 0])
        outputs[1].set_shared_memory("out_high", TENSOR_BYTES)
        result = client.infer("simple", shm_inputs(protocol, "in", [0, TENSOR_BYTES]), outputs=outputs)
        total = shm.get_contents_as_numpy(output_handle, np.int32, [1, 16])
        difference = shm.get_contents_as_numpy(output_handle, np.int32, [1, 16], offset=TENSOR_BYTES)
        np.testing.assert_array_equal(total, a + b)
        np.testing.assert_array_equal(difference, a - b)
        # The answer names the outputs but carries no data for them.
        if protocol == "http":
            assert result.get_output("OUTPUT0") == {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]}
        else:
            assert result.get_output("OUTPUT0").shape == [1, 16]
            assert result.get_response().raw_output_contents == [b"", b""]

        # One input from shared memory, the other in the request, and the
        # outputs in the answer as usual.
        c = np.full((1, 16), 3, dtype=np.int32)
        mixed = shm_inputs(protocol, "in", [0, 0])
        mixed[1] = module(protocol).InferInput("INPUT1", [1, 16], "INT32")
        mixed[1].set_data_from_numpy(c)
        result = client.infer("simple", mixed)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + c)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - c)

        client.unregister_system_shared_memory("out_high")
        status = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
        names = sorted(status["regions"]) if protocol == "grpc" else sorted(region["name"] for region in status)
        assert names == ["in", "out"]
        client.unregister_system_shared_memory()
        assert_simple_works(client)


def test_shared_memory_mistakes_are_named(shm_server, protocol, regions):
    handle, key = regions(f"small-{protocol}", TENSOR_BYTES)
    with shm_server.client(protocol) as client:
        client.unregister_system_shared_memory()
        client.register_system_shared_memory("small", key, TENSOR_BYTES)
        with pytest.raises(InferenceServerException) as again:
            client.register_system_shared_memory("small", key, TENSOR_BYTES)
        assert again.value.status() in ("StatusCode.ALREADY_EXISTS", "409"), again.value
        assert "already" in again.value.message()
        expect_error(
            client,
            lambda: client.register_system_shared_memory("big", key, 2 * TENSOR_BYTES),
            "INVALID_ARGUMENT",
            "big",
            "do not fit",
        )
        expect_error(
            client,
            lambda: client.register_system_shared_memory("gone", "/tritonrs-no-such-object", 8),
            "INVALID_ARGUMENT",
            "cannot open",
        )
        expect_error(
            client,
            lambda: client.infer("simple", shm_inputs(protocol, "nowhere", [0, 0])),
            "INVALID_ARGUMENT",
            "input 'INPUT0'",
            "no shared memory region 'nowhere'",
        )
        expect_error(
            client,
            lambda: client.infer("simple", shm_inputs(protocol, "small", [0, 32])),
            "INVALID_ARGUMENT",
            "input 'INPUT1'",
            "64 bytes at offset 32 do not fit shared memory region 'small'",
        )
        # The output region is too small for a batch of two.
        a, b = simple_data(2, seed=6)
        inputs = [module(protocol).InferInput(name, [2, 16], "INT32") for name in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(b)
        outputs = shm_outputs(protocol, "small", [0, 0])
        expect_error(
            client,
            lambda: client.infer("simple", inputs, outputs=outputs[:1]),
            "INVALID_ARGUMENT",
            "output 'OUTPUT0'",
            "(64 bytes) should be at least 128 bytes",
        )
        expect_error(
            client,
            lambda: client.get_system_shared_memory_status("nowhere"),
            "NOT_FOUND",
            "nowhere",
        )
        client.unregister_system_shared_memory()
        assert_simple_works(client)


def test_the_register_route_checks_its_body(shm_server):
    url = shm_server.http_url
    response = post(url, "/v2/systemsharedmemory/region/r/register", {"key": 7, "byte_size": 8})
    expect_error_response(response, 400, "region 'r'", "'key' must be")
    response = post(url, "/v2/systemsharedmemory/region/r/register", {"key": "/k"})
    expect_error_response(response, 400, "'byte_size' is missing")
    response = post(url, "/v2/systemsharedmemory/region/r/register", {"key": "/k", "byte_size": -1})
    expect_error_response(response, 400, "'byte_size' must be a byte count")


def test_the_extension_is_listed_only_when_allowed(shm_server, client):
    with shm_server.client("http") as allowed:
        assert "system_shared_memory" in server_metadata(allowed)["extensions"]
    # The shared server runs with the default, --allow-client-shm=false.
    assert "system_shared_memory" not in server_metadata(client)["extensions"]


def test_client_shared_memory_is_off_by_default(client, protocol):
    expect_error(
        client,
        lambda: client.register_system_shared_memory("r", "/k", 8),
        "UNAVAILABLE",
        "--allow-client-shm=true",
    )
    expect_error(
        client,
        lambda: client.infer("simple", shm_inputs(protocol, "r", [0, 0])),
        "UNAVAILABLE",
        "--allow-client-shm=true",
    )
    assert_simple_works(client)
