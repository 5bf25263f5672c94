"""Triton's binary tensor data extension, by hand: a JSON header of
Inference-Header-Content-Length bytes followed by the tensors, each
`binary_data_size` long; the raw form (Inference-Header-Content-Length: 0,
the whole body one input's data); and every way the sizes can disagree.
Each bad request gets a 400 naming what is wrong, and the server keeps
serving."""

import json
import struct

import numpy as np
import pytest
import tritonclient.http as httpclient

from http_requests import assert_http_serves, expect_error_response, post


def binary_request(inputs, outputs=None, **parameters):
    """A body and headers with each input's bytes after the JSON header.
    `inputs`: (name, datatype, shape, bytes, declared binary_data_size)."""
    header = {
        "inputs": [
            {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}
            for name, datatype, shape, _, size in inputs
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    if parameters:
        header["parameters"] = parameters
    encoded = json.dumps(header).encode()
    body = encoded + b"".join(data for _, _, _, data, _ in inputs)
    return body, {"Inference-Header-Content-Length": str(len(encoded))}


def int32_input(name, values, size=None, shape=None):
    """An INT32 input of `values`; `size` and `shape` default to the truth."""
    data = np.asarray(values, dtype="<i4").tobytes()
    return (name, "INT32", shape or [1, len(values)], data, len(data) if size is None else size)


def result_of(response):
    """The tritonclient InferResult of a binary-data response."""
    assert response.status == 200, response.body[:500]
    return httpclient.InferenceServerClient.parse_response_body(
        response.body, header_length=int(response.headers["inference-header-content-length"])
    )


A = list(range(16))
B = [100 - n for n in range(16)]


def test_binary_inputs_and_binary_outputs(http_url):
    body, headers = binary_request([int32_input("INPUT0", A), int32_input("INPUT1", B)], binary_data_output=True)
    result = result_of(post(http_url, "/v2/models/simple/infer", body, headers))
    assert result.as_numpy("OUTPUT0").tolist() == [[a + b for a, b in zip(A, B, strict=True)]]
    assert result.as_numpy("OUTPUT1").tolist() == [[a - b for a, b in zip(A, B, strict=True)]]
    assert result.get_output("OUTPUT0")["parameters"]["binary_data_size"] == 64


def test_binary_and_json_outputs_mixed(http_url):
    outputs = [
        {"name": "OUTPUT0", "parameters": {"binary_data": True}},
        {"name": "OUTPUT1", "parameters": {"binary_data": False}},
    ]
    body, headers = binary_request([int32_input("INPUT0", A), int32_input("INPUT1", B)], outputs=outputs)
    result = result_of(post(http_url, "/v2/models/simple/infer", body, headers))
    assert "data" not in result.get_output("OUTPUT0")
    assert result.get_output("OUTPUT1")["data"] == [a - b for a, b in zip(A, B, strict=True)]
    assert result.as_numpy("OUTPUT0").tolist() == [[a + b for a, b in zip(A, B, strict=True)]]


def test_json_and_binary_inputs_mixed(http_url):
    header = {
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": A},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        ]
    }
    encoded = json.dumps(header).encode()
    body = encoded + np.asarray(B, dtype="<i4").tobytes()
    response = post(http_url, "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": str(len(encoded))})
    assert response.status == 200, response.body
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    assert outputs["OUTPUT0"] == [a + b for a, b in zip(A, B, strict=True)]


# id: (inputs, fragments of the error message)
BAD_BINARY = {
    "binary-data-size-past-the-body": (
        [int32_input("INPUT0", A), int32_input("INPUT1", B, size=100)],
        ["INPUT1", "binary_data_size 100", "64 bytes"],
    ),
    "binary-data-size-smaller-than-the-shape": (
        [int32_input("INPUT0", A[:15], shape=[1, 16]), int32_input("INPUT1", B)],
        ["INPUT0", "60 bytes", "64"],
    ),
    "binary-data-left-over": (
        [int32_input("INPUT0", A), int32_input("INPUT1", B, size=60)],
        ["128 bytes of binary data", "add up to 124"],
    ),
    "binary-data-size-not-a-number": (
        [int32_input("INPUT0", A), int32_input("INPUT1", B, size="64")],
        ["INPUT1", "binary_data_size"],
    ),
}


@pytest.mark.parametrize("case", BAD_BINARY)
def test_bad_binary_data_sizes(http_url, case):
    inputs, fragments = BAD_BINARY[case]
    body, headers = binary_request(inputs)
    expect_error_response(post(http_url, "/v2/models/simple/infer", body, headers), 400, *fragments)
    assert_http_serves(http_url)


@pytest.mark.parametrize(
    "value, fragments",
    [("100000", ["Inference-Header-Content-Length", "100000"]), ("lots", ["Inference-Header-Content-Length", "lots"])],
    ids=["larger-than-the-body", "not-a-number"],
)
def test_bad_header_length(http_url, value, fragments):
    body, _ = binary_request([int32_input("INPUT0", A), int32_input("INPUT1", B)])
    response = post(http_url, "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": value})
    expect_error_response(response, 400, *fragments)
    assert_http_serves(http_url)


def test_header_length_that_cuts_the_json(http_url):
    body, headers = binary_request([int32_input("INPUT0", A), int32_input("INPUT1", B)])
    short = str(int(headers["Inference-Header-Content-Length"]) - 5)
    response = post(http_url, "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": short})
    expect_error_response(response, 400, "simple", "not a valid inference request")
    assert_http_serves(http_url)


def test_data_and_binary_data_size_together(http_url):
    header = {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": A}]}
    header["inputs"][0]["parameters"] = {"binary_data_size": 64}
    encoded = json.dumps(header).encode()
    body = encoded + bytes(64)
    response = post(http_url, "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": str(len(encoded))})
    expect_error_response(response, 400, "INPUT0", "both data and binary_data_size")
    assert_http_serves(http_url)


def test_malformed_binary_bytes_elements(http_url):
    # The first element claims 100 bytes but only 2 follow.
    good = b"".join(struct.pack("<I", 1) + b"1" for _ in range(16))
    truncated = struct.pack("<I", 100) + b"12"
    inputs = [
        ("INPUT0", "BYTES", [1, 16], truncated, len(truncated)),
        ("INPUT1", "BYTES", [1, 16], good, len(good)),
    ]
    body, headers = binary_request(inputs)
    response = post(http_url, "/v2/models/simple_string/infer", body, headers)
    expect_error_response(response, 400, "simple_string", "INPUT0", "100")
    assert_http_serves(http_url)


# --- the raw form: Inference-Header-Content-Length: 0 -----------------------


RAW = {"Inference-Header-Content-Length": "0"}


def test_raw_binary_request_on_scale_fp16(http_url):
    # scale_fp16 is [batch, 4] FP16: 8 bytes are 4 values, one row, batch 1.
    values = np.array([1.0, -3.0, 0.125, 65504.0], dtype="<f2")
    result = result_of(post(http_url, "/v2/models/scale_fp16/infer", values.tobytes(), RAW))
    output = result.get_output("OUTPUT")
    assert (output["datatype"], output["shape"]) == ("FP16", [1, 4])
    assert output["parameters"]["binary_data_size"] == 8
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), (values * np.float16(0.5)).reshape(1, 4))


def test_raw_binary_request_with_a_variable_dimension(http_url):
    # identity_int16 is [batch, -1]: 10 bytes fill [1, 5].
    values = np.array([-32768, 32767, 0, 1, -1], dtype="<i2")
    result = result_of(post(http_url, "/v2/models/identity_int16/infer", values.tobytes(), RAW))
    assert result.get_output("OUTPUT0")["shape"] == [1, 5]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values.reshape(1, 5))


def test_raw_binary_request_on_a_bytes_input(http_url):
    # The body is the one BYTES element itself; as in Triton, the server adds
    # the 4-byte length BYTES tensors carry, so the bytes come back as sent.
    element = b"\x00raw \xff bytes"
    result = result_of(post(http_url, "/v2/models/identity_bytes/infer", element, RAW))
    assert result.get_output("OUTPUT0")["shape"] == [1, 1]
    assert result.as_numpy("OUTPUT0").tolist() == [[element]]


def test_raw_binary_request_on_predict(http_url):
    values = np.array([2.0, 4.0, 6.0, 8.0], dtype="<f2")
    response = post(http_url, "/predict", values.tobytes(), {**RAW, "model_name": "scale_fp16"})
    np.testing.assert_array_equal(result_of(response).as_numpy("OUTPUT"), (values / 2).reshape(1, 4))


@pytest.mark.parametrize(
    "model, data, fragments",
    [
        ("scale_fp16", bytes(6), ["scale_fp16", "INPUT", "6 bytes", "expected 8"]),
        # The raw form is one batch-1 request: two rows do not fit it.
        ("scale_fp16", bytes(16), ["scale_fp16", "INPUT", "16 bytes", "expected 8"]),
        ("simple", bytes(64), ["simple", "one input", "2"]),
        ("scale_fp16", b"", ["scale_fp16", "INPUT"]),
    ],
    ids=["bytes-that-do-not-fill-the-shape", "two-rows", "model-with-two-inputs", "empty-body"],
)
def test_bad_raw_binary_requests(http_url, model, data, fragments):
    expect_error_response(post(http_url, f"/v2/models/{model}/infer", data, RAW), 400, *fragments)
    assert_http_serves(http_url)
