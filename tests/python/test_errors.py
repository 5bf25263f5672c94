"""Every class of bad request gets the right status code and a message
naming the model, the tensor and what was expected, and leaves the server
serving: after each one, `simple` must still answer correctly."""

import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc

from model_requests import RPC_TIMEOUT_S, assert_simple_works, expect_rpc_error, simple_data, simple_inputs


def int32_input(name, data):
    tensor = grpcclient.InferInput(name, list(data.shape), "INT32")
    tensor.set_data_from_numpy(data)
    return tensor


def infer_simple(inputs, **kwargs):
    return lambda client: client.infer("simple", inputs, client_timeout=RPC_TIMEOUT_S, **kwargs)


A, B = simple_data(1, seed=3)
A9, B9 = simple_data(9, seed=4)
FP32_INPUT = grpcclient.InferInput("INPUT0", [1, 16], "FP32").set_data_from_numpy(A.astype(np.float32))

# id: (request, status, fragments the message must contain)
CLIENT_CASES = {
    "unknown-input": (
        infer_simple([int32_input("INPUT0", A), int32_input("INPUTX", B)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUTX", "INPUT0, INPUT1"],
    ),
    "missing-input": (
        infer_simple([int32_input("INPUT0", A)]),
        "INVALID_ARGUMENT",
        ["simple", "missing input 'INPUT1'", "INT32", "[-1,16]"],
    ),
    "wrong-datatype": (
        infer_simple([FP32_INPUT, int32_input("INPUT1", B)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "FP32", "expected INT32"],
    ),
    "wrong-shape": (
        infer_simple([int32_input("INPUT0", A[:, :15]), int32_input("INPUT1", B[:, :15])]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "[1,15]", "expected [-1,16]"],
    ),
    "batch-too-large": (
        infer_simple(simple_inputs(A9, B9)),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "batch size 9", "max_batch_size 8"],
    ),
    "duplicate-input": (
        infer_simple([int32_input("INPUT0", A), int32_input("INPUT1", B), int32_input("INPUT0", A)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT0", "more than once"],
    ),
    "batch-sizes-differ": (
        infer_simple([int32_input("INPUT0", A9[:2]), int32_input("INPUT1", B)]),
        "INVALID_ARGUMENT",
        ["simple", "INPUT1", "batch size 1", "batch size 2"],
    ),
    "unknown-requested-output": (
        infer_simple(simple_inputs(A, B), outputs=[grpcclient.InferRequestedOutput("OUTPUT9")]),
        "INVALID_ARGUMENT",
        ["simple", "OUTPUT9", "OUTPUT0, OUTPUT1"],
    ),
    "malformed-version": (
        infer_simple(simple_inputs(A, B), model_version="abc"),
        "INVALID_ARGUMENT",
        ["simple", "'abc'"],
    ),
    "unknown-model": (
        lambda client: client.infer("no_such_model", simple_inputs(A, B), client_timeout=RPC_TIMEOUT_S),
        "NOT_FOUND",
        ["no_such_model"],
    ),
    "unknown-version": (
        infer_simple(simple_inputs(A, B), model_version="7"),
        "NOT_FOUND",
        ["simple", "version 7"],
    ),
}


@pytest.mark.parametrize("case", CLIENT_CASES)
def test_bad_request_is_reported_and_server_keeps_serving(client, case):
    call, status, fragments = CLIENT_CASES[case]
    expect_rpc_error(lambda: call(client), status, *fragments)
    assert_simple_works(client)


@pytest.fixture(scope="module")
def stub(url):
    with grpc.insecure_channel(url) as channel:
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


def test_raw_byte_size_mismatch(stub, client):
    request = raw_request("simple", "INT32", {"INPUT0": bytes(60), "INPUT1": bytes(64)})
    expect_stub_error(stub, request, "simple", "INPUT0", "60 bytes", "expected 64")
    assert_simple_works(client)


def test_bytes_length_prefix_beyond_the_data(stub, client):
    good = b"".join(struct.pack("<I", 1) + b"1" for _ in range(16))
    # The first element claims 100 bytes but only 2 follow.
    truncated = struct.pack("<I", 100) + b"12"
    request = raw_request("simple_string", "BYTES", {"INPUT0": truncated, "INPUT1": good})
    expect_stub_error(stub, request, "simple_string", "INPUT0", "malformed BYTES", "100")
    assert_simple_works(client)


def test_too_few_bytes_elements(stub, client):
    fifteen = b"".join(struct.pack("<I", 1) + b"1" for _ in range(15))
    sixteen = fifteen + struct.pack("<I", 1) + b"1"
    request = raw_request("simple_string", "BYTES", {"INPUT0": fifteen, "INPUT1": sixteen})
    expect_stub_error(stub, request, "simple_string", "INPUT0", "15 BYTES elements", "expected 16")
    assert_simple_works(client)


def test_raw_contents_for_only_some_inputs(stub, client):
    request = raw_request("simple", "INT32", {"INPUT0": bytes(64)})
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
    expect_stub_error(stub, request, "simple", "2 inputs but 1 raw_input_contents")
    assert_simple_works(client)


def test_unknown_datatype_name(stub, client):
    request = raw_request("simple", "FLOAT32", {"INPUT0": bytes(64), "INPUT1": bytes(64)})
    expect_stub_error(stub, request, "simple", "INPUT0", "FLOAT32")
    assert_simple_works(client)


def test_negative_dimension_in_a_request(stub, client):
    request = raw_request("simple", "INT32", {"INPUT0": bytes(64), "INPUT1": bytes(64)}, shape=(-1, 16))
    expect_stub_error(stub, request, "simple", "INPUT0", "[-1,16]")
    assert_simple_works(client)


@pytest.mark.parametrize(
    "shape, fragment",
    [((1, 2**62), "[1,4611686018427387904]"), ((4, 2**62), "overflows")],
    ids=["byte-size-overflows", "element-count-overflows"],
)
def test_absurd_shapes_are_refused(stub, client, shape, fragment):
    request = raw_request("identity_int32", "INT32", {"INPUT0": bytes(16)}, shape=shape)
    expect_stub_error(stub, request, "identity_int32", "INPUT0", fragment)
    assert_simple_works(client)


def test_bad_requests_on_other_models_leave_them_serving(client):
    data = np.ones((1, 4), dtype=np.float32)
    wrong = grpcclient.InferInput("INPUT", [1, 4], "FP32").set_data_from_numpy(data)
    expect_rpc_error(
        lambda: client.infer("scale_fp16", [wrong], client_timeout=RPC_TIMEOUT_S),
        "INVALID_ARGUMENT",
        "scale_fp16",
        "INPUT",
        "expected FP16",
    )
    # busy_loop does not batch, so a leading batch dimension is a wrong shape.
    iterations = grpcclient.InferInput("ITERATIONS", [1, 1], "INT64").set_data_from_numpy(np.ones((1, 1), np.int64))
    expect_rpc_error(
        lambda: client.infer("busy_loop", [iterations], client_timeout=RPC_TIMEOUT_S),
        "INVALID_ARGUMENT",
        "busy_loop",
        "ITERATIONS",
        "expected [1]",
    )
    good = grpcclient.InferInput("INPUT", [1, 4], "FP16").set_data_from_numpy(data.astype(np.float16))
    result = client.infer("scale_fp16", [good], client_timeout=RPC_TIMEOUT_S)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), np.full((1, 4), 0.5, np.float16))
    assert_simple_works(client)


def test_unimplemented_rpcs_say_so(client):
    expect_rpc_error(lambda: client.get_model_repository_index(), "UNIMPLEMENTED", "RepositoryIndex")
    expect_rpc_error(lambda: client.get_inference_statistics("simple"), "UNIMPLEMENTED", "ModelStatistics")
    assert_simple_works(client)


def test_classification_is_refused_rather_than_ignored(client):
    # Ignoring class_count would return raw tensors where the caller expects
    # labels, so the server must say it does not classify.
    a, b = simple_data(1, seed=5)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0", class_count=2)]
    expect_rpc_error(
        lambda: client.infer("simple", simple_inputs(a, b), outputs=outputs, client_timeout=RPC_TIMEOUT_S),
        "UNIMPLEMENTED",
        "simple",
        "OUTPUT0",
        "classification",
    )
    assert_simple_works(client)
