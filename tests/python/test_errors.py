"""Every class of bad request gets the right status code and a message
naming the model, the tensor and what was expected, and leaves the server
serving: after each one, `simple` must still answer correctly. The
request-level cases run over gRPC and HTTP (binary and JSON tensors); the
raw-message cases are gRPC's own."""

import struct

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from http_requests import expect_error_response, http_request
from model_requests import RPC_TIMEOUT_S, assert_simple_works, simple_data, simple_inputs
from protocols import GRPC, HTTP, HTTP_DEFLATE, HTTP_GZIP, HTTP_JSON, as_numpy, expect_error

A, B = simple_data(1, seed=3)
A9, B9 = simple_data(9, seed=4)


def infer_simple(inputs, outputs=None, **kwargs):
    """A request to `simple`: `inputs(wire)` builds its inputs, `outputs(wire)` its requested outputs."""
    return lambda client, wire: wire.infer(
        client, "simple", inputs(wire), outputs=outputs(wire) if outputs else None, **kwargs
    )


# id: (request, status, fragments the message must contain)
CLIENT_CASES = {
    "unknown-input": (
        infer_simple(lambda wire: [wire.input("INPUT0", A), wire.input("INPUTX", B)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUTX", "INPUT0, INPUT1"],
    ),
    "missing-input": (
        infer_simple(lambda wire: [wire.input("INPUT0", A)]),
        "INVALID_ARGUMENT",
        ["simple", "missing input 'INPUT1'", "INT32", "[-1,16]"],
    ),
    "wrong-datatype": (
        infer_simple(lambda wire: [wire.input("INPUT0", A.astype(np.float32)), wire.input("INPUT1", B)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "FP32", "expected INT32"],
    ),
    "wrong-shape": (
        infer_simple(lambda wire: simple_inputs(A[:, :15], B[:, :15], wire)),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "[1,15]", "expected [-1,16]"],
    ),
    "batch-too-large": (
        infer_simple(lambda wire: simple_inputs(A9, B9, wire)),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "batch size 9", "max_batch_size 8"],
    ),
    "duplicate-input": (
        infer_simple(lambda wire: [wire.input("INPUT0", A), wire.input("INPUT1", B), wire.input("INPUT0", A)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "more than once"],
    ),
    "batch-sizes-differ": (
        infer_simple(lambda wire: [wire.input("INPUT0", A9[:2]), wire.input("INPUT1", B)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT1", "batch size 1", "batch size 2"],
    ),
    "unknown-requested-output": (
        infer_simple(lambda wire: simple_inputs(A, B, wire), outputs=lambda wire: wire.outputs("OUTPUT9")),
        "INVALID_ARGUMENT",
        ["simple", "OUTPUT9", "OUTPUT0, OUTPUT1"],
    ),
    "malformed-version": (
        infer_simple(lambda wire: simple_inputs(A, B, wire), model_version="abc"),
        "INVALID_ARGUMENT",
        ["simple", "'abc'"],
    ),
    "unknown-model": (
        lambda client, wire: wire.infer(client, "no_such_model", simple_inputs(A, B, wire)),
        "NOT_FOUND",
        ["no_such_model"],
    ),
    "unknown-version": (
        infer_simple(lambda wire: simple_inputs(A, B, wire), model_version="7"),
        "NOT_FOUND",
        ["simple", "version 7"],
    ),
}


@pytest.mark.wires(GRPC, HTTP, HTTP_JSON)
@pytest.mark.parametrize("case", CLIENT_CASES)
def test_bad_request_is_reported_and_server_keeps_serving(client, wire, case):
    call, status, fragments = CLIENT_CASES[case]
    expect_error(client, lambda: call(client, wire), status, *fragments)
    assert_simple_works(client)


@pytest.mark.wires(HTTP_GZIP, HTTP_DEFLATE)
def test_error_messages_survive_response_compression(client, wire):
    # tritonclient.http decodes an error body as plain JSON, whatever its
    # Content-Encoding, and Triton sends error bodies uncompressed; a
    # compressed error reaches the caller as undecodable bytes instead of
    # the server's message.
    call, status, fragments = CLIENT_CASES["wrong-shape"]
    expect_error(client, lambda: call(client, wire), status, *fragments)
    assert_simple_works(client)


@pytest.fixture(scope="module")
def stub(grpc_url):
    with grpc.insecure_channel(grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def raw_request(model, datatype, payloads, shape=(1, 16)):
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, payload in payloads.items():
        request.inputs.add(name=name, datatype=datatype, shape=list(shape))
        request.raw_input_contents.append(payload)
    return request


def expect_stub_error(stub, request, *fragments):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details(), caught.value.details()


def test_raw_byte_size_mismatch(stub, grpc_client):
    request = raw_request("simple", "INT32", {"INPUT0": bytes(60), "INPUT1": bytes(64)})
    expect_stub_error(stub, request, "simple", "INPUT0", "60 bytes", "expected 64")
    assert_simple_works(grpc_client)


def test_bytes_length_prefix_beyond_the_data(stub, grpc_client):
    good = b"".join(struct.pack("<I", 1) + b"1" for _ in range(16))
    # The first element claims 100 bytes but only 2 follow.
    truncated = struct.pack("<I", 100) + b"12"
    request = raw_request("simple_string", "BYTES", {"INPUT0": truncated, "INPUT1": good})
    expect_stub_error(stub, request, "simple_string", "INPUT0", "malformed BYTES", "100")
    assert_simple_works(grpc_client)


def test_too_few_bytes_elements(stub, grpc_client):
    fifteen = b"".join(struct.pack("<I", 1) + b"1" for _ in range(15))
    sixteen = fifteen + struct.pack("<I", 1) + b"1"
    request = raw_request("simple_string", "BYTES", {"INPUT0": fifteen, "INPUT1": sixteen})
    expect_stub_error(stub, request, "simple_string", "INPUT0", "15 BYTES elements", "expected 16")
    assert_simple_works(grpc_client)


def test_raw_contents_for_only_some_inputs(stub, grpc_client):
    request = raw_request("simple", "INT32", {"INPUT0": bytes(64)})
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
    expect_stub_error(stub, request, "simple", "2 inputs but 1 raw_input_contents")
    assert_simple_works(grpc_client)


def test_unknown_datatype_name(stub, grpc_client):
    request = raw_request("simple", "FLOAT32", {"INPUT0": bytes(64), "INPUT1": bytes(64)})
    expect_stub_error(stub, request, "simple", "INPUT0", "FLOAT32")
    assert_simple_works(grpc_client)


def test_negative_dimension_in_a_request(stub, grpc_client):
    request = raw_request("simple", "INT32", {"INPUT0": bytes(64), "INPUT1": bytes(64)}, shape=(-1, 16))
    expect_stub_error(stub, request, "simple", "INPUT0", "[-1,16]")
    assert_simple_works(grpc_client)


@pytest.mark.parametrize(
    "shape, fragment",
    [((1, 2**62), "[1,4611686018427387904]"), ((4, 2**62), "overflows")],
    ids=["byte-size-overflows", "element-count-overflows"],
)
def test_absurd_shapes_are_refused(stub, grpc_client, shape, fragment):
    request = raw_request("identity_int32", "INT32", {"INPUT0": bytes(16)}, shape=shape)
    expect_stub_error(stub, request, "identity_int32", "INPUT0", fragment)
    assert_simple_works(grpc_client)


@pytest.mark.wires(GRPC, HTTP, HTTP_JSON)
def test_bad_requests_on_other_models_leave_them_serving(client, wire):
    data = np.ones((1, 4), dtype=np.float32)
    expect_error(
        client,
        lambda: wire.infer(client, "scale_fp16", [wire.input("INPUT", data)]),
        "INVALID_ARGUMENT",
        "scale_fp16",
        "INPUT",
        "expected FP16",
    )
    # busy_loop does not batch, so a leading batch dimension is a wrong shape.
    iterations = wire.input("ITERATIONS", np.ones((1, 1), np.int64))
    expect_error(
        client,
        lambda: wire.infer(client, "busy_loop", [iterations]),
        "INVALID_ARGUMENT",
        "busy_loop",
        "ITERATIONS",
        "expected [1]",
    )
    result = wire.infer(client, "scale_fp16", [wire.input("INPUT", data.astype(np.float16))])
    np.testing.assert_array_equal(as_numpy(result, "OUTPUT"), np.full((1, 4), 0.5, np.float16))
    assert_simple_works(client)


def simple_raw_request(**parameters):
    """A correct raw request to `simple` carrying request `parameters`."""
    request = raw_request("simple", "INT32", {"INPUT0": bytes(64), "INPUT1": bytes(64)})
    for key, value in parameters.items():
        field = {bool: "bool_param", int: "int64_param", str: "string_param"}[type(value)]
        setattr(request.parameters[key], field, value)
    return request


@pytest.mark.parametrize(
    ("parameters", "fragments"),
    [
        ({"sequence_start": 1}, ["'sequence_start' parameter must be true or false"]),
        ({"sequence_id": True}, ["'sequence_id' parameter must be an integer or a string"]),
        ({"triton_anything": True}, ["'triton_anything'", "reserved", "triton_enable_empty_final_response"]),
    ],
)
def test_reserved_request_parameters_are_checked_over_grpc(stub, grpc_client, parameters, fragments):
    # Triton refuses these rather than ignoring them; tritonclient itself
    # will not send most of them, so the request is built by hand.
    expect_stub_error(stub, simple_raw_request(**parameters), "simple", *fragments)
    # The parameters Triton's gRPC clients do send are taken.
    answer = stub.ModelInfer(
        simple_raw_request(sequence_id="s1", sequence_start=True, triton_enable_empty_final_response=True),
        timeout=RPC_TIMEOUT_S,
    )
    assert answer.model_name == "simple"
    assert_simple_works(grpc_client)


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"triton_enable_empty_final_response": True}, "keys starting with 'triton_' are reserved"),
        ({"binary_data_output": "yes"}, "'binary_data_output' parameter must be true or false"),
        ({"sequence_end": "no"}, "'sequence_end' parameter must be true or false"),
    ],
)
def test_reserved_request_parameters_are_checked_over_http(http_url, http_client, parameters, fragment):
    body = {
        "inputs": [
            {"name": name, "shape": [1, 16], "datatype": "INT32", "data": [0] * 16} for name in ("INPUT0", "INPUT1")
        ],
        "parameters": parameters,
    }
    response = http_request(http_url, "POST", "/v2/models/simple/infer", body=body)
    expect_error_response(response, 400, "simple", fragment)
    assert_simple_works(http_client)
