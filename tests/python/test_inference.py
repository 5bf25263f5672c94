"""Inference through tritonclient's synchronous gRPC client."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from model_requests import RPC_TIMEOUT_S, check_simple_result, simple_data, simple_inputs


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_simple_sum_and_difference(client, batch):
    a, b = simple_data(batch, seed=batch)
    result = client.infer("simple", simple_inputs(a, b), client_timeout=RPC_TIMEOUT_S)
    check_simple_result(result, a, b)
    response = result.get_response()
    assert response.model_name == "simple"
    assert response.model_version == "1"
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("OUTPUT0", "INT32", [batch, 16]),
        ("OUTPUT1", "INT32", [batch, 16]),
    ]


def test_int32_wraps_around_like_onnx_runtime(client):
    a = np.full((1, 16), np.iinfo(np.int32).max, dtype=np.int32)
    b = np.ones((1, 16), dtype=np.int32)
    result = client.infer("simple", simple_inputs(a, b), client_timeout=RPC_TIMEOUT_S)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), np.iinfo(np.int32).min))


def test_only_the_requested_output_is_returned(client):
    a, b = simple_data(2, seed=7)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple", simple_inputs(a, b), outputs=outputs, client_timeout=RPC_TIMEOUT_S)
    assert [output.name for output in result.get_response().outputs] == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_outputs_come_in_the_requested_order(client):
    a, b = simple_data(1, seed=8)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT1"), grpcclient.InferRequestedOutput("OUTPUT0")]
    result = client.infer("simple", simple_inputs(a, b), outputs=outputs, client_timeout=RPC_TIMEOUT_S)
    assert [output.name for output in result.get_response().outputs] == ["OUTPUT1", "OUTPUT0"]
    check_simple_result(result, a, b)


def test_request_id_is_echoed(client):
    a, b = simple_data(1, seed=9)
    result = client.infer("simple", simple_inputs(a, b), request_id="my-request-42", client_timeout=RPC_TIMEOUT_S)
    assert result.get_response().id == "my-request-42"
    check_simple_result(result, a, b)


def test_explicit_model_version(client):
    a, b = simple_data(4, seed=10)
    result = client.infer("simple", simple_inputs(a, b), model_version="1", client_timeout=RPC_TIMEOUT_S)
    assert result.get_response().model_version == "1"
    check_simple_result(result, a, b)


def test_simple_string_adds_decimal_strings(client):
    rng = np.random.default_rng(11)
    a = rng.integers(-1000, 1000, size=(2, 16))
    b = rng.integers(-1000, 1000, size=(2, 16))
    inputs = []
    for name, numbers in (("INPUT0", a), ("INPUT1", b)):
        text = np.array([[str(n).encode() for n in row] for row in numbers], dtype=np.object_)
        tensor = grpcclient.InferInput(name, [2, 16], "BYTES")
        tensor.set_data_from_numpy(text)
        inputs.append(tensor)
    result = client.infer("simple_string", inputs, client_timeout=RPC_TIMEOUT_S)
    expected_sum = [[str(n).encode() for n in row] for row in a + b]
    expected_difference = [[str(n).encode() for n in row] for row in a - b]
    assert result.as_numpy("OUTPUT0").tolist() == expected_sum
    assert result.as_numpy("OUTPUT1").tolist() == expected_difference
    assert result.get_response().outputs[0].datatype == "BYTES"


def test_scale_fp16_halves_its_input(client):
    # Halving is exact for these normal fp16 values, largest finite included.
    data = np.array([[1.0, -3.0, 0.125, 65504.0], [2.5, -0.0, 1024.0, -7.75]], dtype=np.float16)
    tensor = grpcclient.InferInput("INPUT", [2, 4], "FP16")
    tensor.set_data_from_numpy(data)
    result = client.infer("scale_fp16", [tensor], client_timeout=RPC_TIMEOUT_S)
    output = result.as_numpy("OUTPUT")
    assert output.dtype == np.float16
    np.testing.assert_array_equal(output, data * np.float16(0.5))
    np.testing.assert_array_equal(output[0], np.array([0.5, -1.5, 0.0625, 32752.0], dtype=np.float16))


def test_request_parameters_are_accepted(client):
    # tritonclient sends priority and timeout as request parameters, and
    # lets callers add their own; none of them may break a request.
    a, b = simple_data(2, seed=12)
    result = client.infer(
        "simple",
        simple_inputs(a, b),
        priority=1,
        timeout=1_000_000,
        parameters={"custom_text": "x", "custom_int": 3, "custom_flag": True},
        client_timeout=RPC_TIMEOUT_S,
    )
    check_simple_result(result, a, b)
