"""Inference through tritonclient's synchronous clients, on every example
model, over every wire (gRPC; HTTP with binary or JSON tensors, compressed
or not)."""

import numpy as np
import pytest

from model_requests import check_simple_result, simple_data, simple_inputs
from protocols import as_numpy, output_was_json, response_summary


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_simple_sum_and_difference(client, wire, batch):
    a, b = simple_data(batch, seed=batch)
    result = wire.infer(client, "simple", simple_inputs(a, b, wire))
    check_simple_result(result, a, b)
    summary = response_summary(result)
    assert summary["model_name"] == "simple"
    assert summary["model_version"] == "1"
    assert summary["outputs"] == [("OUTPUT0", "INT32", [batch, 16]), ("OUTPUT1", "INT32", [batch, 16])]
    # The server must honour the binary_data choice, not just answer.
    assert output_was_json(result, "OUTPUT0") == wire.json_outputs


def test_int32_wraps_around_like_onnx_runtime(client, wire):
    a = np.full((1, 16), np.iinfo(np.int32).max, dtype=np.int32)
    b = np.ones((1, 16), dtype=np.int32)
    result = wire.infer(client, "simple", simple_inputs(a, b, wire))
    np.testing.assert_array_equal(as_numpy(result, "OUTPUT0"), np.full((1, 16), np.iinfo(np.int32).min))


def test_only_the_requested_output_is_returned(client, wire):
    a, b = simple_data(2, seed=7)
    result = wire.infer(client, "simple", simple_inputs(a, b, wire), outputs=wire.outputs("OUTPUT1"))
    assert [name for name, _, _ in response_summary(result)["outputs"]] == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(as_numpy(result, "OUTPUT1"), a - b)


def test_outputs_come_in_the_requested_order(client, wire):
    a, b = simple_data(1, seed=8)
    outputs = wire.outputs("OUTPUT1", "OUTPUT0")
    result = wire.infer(client, "simple", simple_inputs(a, b, wire), outputs=outputs)
    assert [name for name, _, _ in response_summary(result)["outputs"]] == ["OUTPUT1", "OUTPUT0"]
    check_simple_result(result, a, b)


def test_request_id_is_echoed(client, wire):
    a, b = simple_data(1, seed=9)
    result = wire.infer(client, "simple", simple_inputs(a, b, wire), request_id="my-request-42")
    assert response_summary(result)["id"] == "my-request-42"
    check_simple_result(result, a, b)


def test_explicit_model_version(client, wire):
    a, b = simple_data(4, seed=10)
    result = wire.infer(client, "simple", simple_inputs(a, b, wire), model_version="1")
    assert response_summary(result)["model_version"] == "1"
    check_simple_result(result, a, b)


def test_simple_string_adds_decimal_strings(client, wire):
    rng = np.random.default_rng(11)
    a = rng.integers(-1000, 1000, size=(2, 16))
    b = rng.integers(-1000, 1000, size=(2, 16))
    inputs = []
    for name, numbers in (("INPUT0", a), ("INPUT1", b)):
        text = np.array([[str(n).encode() for n in row] for row in numbers], dtype=np.object_)
        inputs.append(wire.input(name, text, "BYTES"))
    result = wire.infer(client, "simple_string", inputs)
    expected_sum = [[str(n).encode() for n in row] for row in a + b]
    expected_difference = [[str(n).encode() for n in row] for row in a - b]
    assert as_numpy(result, "OUTPUT0").tolist() == expected_sum
    assert as_numpy(result, "OUTPUT1").tolist() == expected_difference
    assert response_summary(result)["outputs"][0][1] == "BYTES"


def test_scale_fp16_halves_its_input(client, wire):
    # Halving is exact for these normal fp16 values, largest finite included.
    data = np.array([[1.0, -3.0, 0.125, 65504.0], [2.5, -0.0, 1024.0, -7.75]], dtype=np.float16)
    result = wire.infer(client, "scale_fp16", [wire.input("INPUT", data, "FP16")])
    output = as_numpy(result, "OUTPUT")
    assert output.dtype == np.float16
    np.testing.assert_array_equal(output, data * np.float16(0.5))
    np.testing.assert_array_equal(output[0], np.array([0.5, -1.5, 0.0625, 32752.0], dtype=np.float16))
    # -0.0 halves to -0.0, also through JSON.
    assert np.signbit(output[1, 1])


def test_request_parameters_are_accepted(client, wire):
    # tritonclient sends priority and timeout as request parameters, and
    # lets callers add their own; none of them may break a request.
    a, b = simple_data(2, seed=12)
    result = wire.infer(
        client,
        "simple",
        simple_inputs(a, b, wire),
        priority=1,
        timeout=1_000_000,
        parameters={"custom_text": "x", "custom_int": 3, "custom_flag": True},
    )
    check_simple_result(result, a, b)
