"""Requests carrying typed `contents` instead of raw bytes. tritonclient
always sends raw bytes, so these requests are built by hand and sent through
the generated stub that ships with tritonclient."""

import grpc
import ml_dtypes
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from model_requests import RPC_TIMEOUT_S


@pytest.fixture(scope="module")
def stub(grpc_url):
    with grpc.insecure_channel(grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def identity_request(datatype, shape, field, values):
    request = service_pb2.ModelInferRequest(model_name=f"identity_{datatype.lower()}")
    tensor = request.inputs.add(name="INPUT0", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


def only_output(response, dtype):
    (output,) = response.outputs
    assert output.name == "OUTPUT0"
    return np.frombuffer(response.raw_output_contents[0], dtype=dtype).reshape(list(output.shape))


# datatype, contents field, numpy type, values (extremes of each type included)
CASES = [
    ("BOOL", "bool_contents", np.bool_, [True, False, False, True]),
    ("INT8", "int_contents", np.int8, [-128, 127, 0, -1]),
    ("INT16", "int_contents", np.int16, [-32768, 32767, 5, -5]),
    ("INT32", "int_contents", np.int32, [-(2**31), 2**31 - 1, 7, -7]),
    ("INT64", "int64_contents", np.int64, [-(2**63), 2**63 - 1, 1, 0]),
    ("UINT8", "uint_contents", np.uint8, [0, 255, 1, 128]),
    ("UINT16", "uint_contents", np.uint16, [0, 65535, 2, 40000]),
    ("UINT32", "uint_contents", np.uint32, [0, 2**32 - 1, 3, 2**31]),
    ("UINT64", "uint64_contents", np.uint64, [0, 2**64 - 1, 4, 2**63]),
    ("FP32", "fp32_contents", np.float32, [1.5, -0.0, float("inf"), 3.4028234663852886e38]),
    ("FP64", "fp64_contents", np.float64, [2.5, -1e308, float("-inf"), 5e-324]),
]


@pytest.mark.parametrize("datatype, field, dtype, values", CASES, ids=[case[0] for case in CASES])
def test_typed_contents_round_trip(stub, datatype, field, dtype, values):
    request = identity_request(datatype, [2, 2], field, values)
    response = stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
    output = only_output(response, dtype)
    np.testing.assert_array_equal(output, np.array(values, dtype=dtype).reshape(2, 2))


def test_bytes_contents_round_trip(stub):
    values = [b"", b"\x00\xff", b"plain", "ünïcode".encode()]
    request = identity_request("BYTES", [1, 4], "bytes_contents", values)
    response = stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
    raw = response.raw_output_contents[0]
    # The response uses the raw BYTES layout: a 4-byte little-endian length
    # before each element.
    expected = b"".join(len(value).to_bytes(4, "little") + value for value in values)
    assert raw == expected


def test_simple_with_int_contents(stub):
    a = list(range(16))
    b = [3 * n - 20 for n in range(16)]
    request = service_pb2.ModelInferRequest(model_name="simple", id="typed")
    for name, values in (("INPUT0", a), ("INPUT1", b)):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int_contents.extend(values)
    response = stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
    assert response.id == "typed"
    outputs = {
        output.name: np.frombuffer(raw, np.int32).tolist()
        for output, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
    assert outputs == {
        "OUTPUT0": [x + y for x, y in zip(a, b, strict=True)],
        "OUTPUT1": [x - y for x, y in zip(a, b, strict=True)],
    }


@pytest.mark.parametrize(
    "request_of, fragments",
    [
        (lambda: identity_request("UINT8", [1, 2], "uint_contents", [1, 300]), ["INPUT0", "300", "UINT8"]),
        (lambda: identity_request("INT8", [1, 1], "int_contents", [-129]), ["INPUT0", "-129", "INT8"]),
        (
            lambda: identity_request("INT32", [1, 2], "fp32_contents", [1.0, 2.0]),
            ["INPUT0", "int_contents", "fp32_contents"],
        ),
        (lambda: identity_request("FP16", [1, 1], "fp32_contents", [1.0]), ["INPUT0", "FP16", "raw_input_contents"]),
        (lambda: identity_request("INT64", [1, 3], "int64_contents", [1, 2]), ["INPUT0", "[1,3]"]),
    ],
    ids=["uint8-out-of-range", "int8-out-of-range", "wrong-field", "fp16-has-no-field", "too-few-values"],
)
def test_bad_typed_contents_are_invalid_arguments(stub, request_of, fragments):
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request_of(), timeout=RPC_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in fragments:
        assert fragment in caught.value.details(), caught.value.details()


def test_contents_and_raw_for_the_same_input_are_refused(stub):
    request = identity_request("INT32", [1, 1], "int_contents", [1])
    request.raw_input_contents.append(np.array([1], np.int32).tobytes())
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "INPUT0" in caught.value.details()


def test_bf16_raw_through_the_stub(stub):
    # BF16 has no typed field; raw little-endian bfloat16 is the only way in.
    values = np.array([[1.0, -2.0, 0.5]], dtype=ml_dtypes.bfloat16)
    request = service_pb2.ModelInferRequest(model_name="identity_bf16")
    request.inputs.add(name="INPUT0", datatype="BF16", shape=[1, 3])
    request.raw_input_contents.append(values.tobytes())
    response = stub.ModelInfer(request, timeout=RPC_TIMEOUT_S)
    np.testing.assert_array_equal(only_output(response, ml_dtypes.bfloat16), values)
