"""Every protocol datatype round-trips unchanged through an identity model,
extreme values included, over every wire. Binary tensors are compared bit
for bit, so NaN payloads, signed zeros and subnormals must survive too;
JSON carries numbers, so there the values must survive."""

import ml_dtypes
import numpy as np
import pytest

from protocols import (
    HTTP_DEFLATE,
    HTTP_GZIP,
    HTTP_JSON,
    Wire,
    as_numpy,
    expect_error,
    output_was_json,
    response_summary,
)

INTEGER_TYPES = {
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
}
# tritonclient 2.73.0 maps BF16 to ml_dtypes.bfloat16 in both directions
# (tritonclient.utils.triton_to_np_dtype / np_to_triton_dtype).
FLOAT_TYPES = {"FP16": np.float16, "BF16": ml_dtypes.bfloat16, "FP32": np.float32, "FP64": np.float64}
# Unsigned integers of the same width, to compare floats bit for bit.
SAME_WIDTH_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def round_trip(client, wire, datatype, data):
    model = f"identity_{datatype.lower()}"
    result = wire.infer(client, model, [wire.input("INPUT0", data, datatype)])
    assert response_summary(result)["outputs"] == [("OUTPUT0", datatype, list(data.shape))]
    assert output_was_json(result, "OUTPUT0") == wire.json_outputs
    return as_numpy(result, "OUTPUT0")


def assert_same_bits(actual, expected):
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    bits = SAME_WIDTH_BITS[expected.dtype.itemsize]
    np.testing.assert_array_equal(actual.view(bits), expected.view(bits))


@pytest.mark.parametrize("datatype", INTEGER_TYPES)
def test_integers_round_trip(client, wire, datatype):
    dtype = INTEGER_TYPES[datatype]
    info = np.iinfo(dtype)
    rng = np.random.default_rng(len(datatype))
    data = rng.integers(info.min, info.max, size=(3, 40), dtype=dtype, endpoint=True)
    data[0, :4] = [info.min, info.max, 0, info.max - 1]
    output = round_trip(client, wire, datatype, data)
    assert output.dtype == dtype
    np.testing.assert_array_equal(output, data)


def float_specials(dtype, finite_only):
    finfo = ml_dtypes.finfo(dtype) if dtype == ml_dtypes.bfloat16 else np.finfo(dtype)
    finite = [0.0, -0.0, finfo.max, finfo.min, finfo.tiny, finfo.smallest_subnormal, finfo.eps]
    return np.array(finite if finite_only else [np.nan, -np.nan, np.inf, -np.inf, *finite], dtype=dtype)


@pytest.mark.parametrize("datatype", FLOAT_TYPES)
def test_floats_round_trip_bit_for_bit(client, wire, datatype):
    dtype = FLOAT_TYPES[datatype]
    rng = np.random.default_rng(len(datatype) + 100)
    data = (rng.standard_normal((4, 32)) * 1000).astype(dtype)
    # NaN and infinity in JSON are tested on their own below; a NaN's
    # payload has no JSON form at all.
    json_anywhere = wire.json_outputs or (wire.json_inputs and datatype != "BF16")
    specials = float_specials(dtype, finite_only=json_anywhere)
    data[1, : len(specials)] = specials
    if not json_anywhere:
        # A NaN with a payload: identity must copy bits, not canonicalise them.
        bits = SAME_WIDTH_BITS[np.dtype(dtype).itemsize]
        data.view(bits)[2, 0] = data.view(bits)[1, 0] | bits(1)
    output = round_trip(client, wire, datatype, data)
    assert_same_bits(output, data)


@pytest.mark.wires(HTTP_JSON, HTTP_GZIP, HTTP_DEFLATE)
def test_json_floats_carry_nan_and_infinity(client, wire):
    # tritonclient.http writes NaN, Infinity and -Infinity into JSON `data`
    # (python-rapidjson's default) and reads them back, and Triton reads and
    # writes them the same way (TritonJson parses with kParseNanAndInfFlag
    # and writes with kWriteNanAndInfFlag), so they must survive JSON inputs
    # (json-in wires) and JSON outputs (json-out wires) alike.
    data = np.array([[np.nan, np.inf, -np.inf, 1.5]], dtype=np.float32)
    output = round_trip(client, wire, "FP32", data)
    np.testing.assert_array_equal(output, data)


def test_bf16_values_arrive_as_bfloat16(client, wire):
    data = np.array([[1.0, -2.5, 3.140625, 65280.0, 2.0**-10]], dtype=ml_dtypes.bfloat16)
    output = round_trip(client, wire, "BF16", data)
    assert output.dtype == ml_dtypes.bfloat16
    assert output.astype(np.float32).tolist() == [[1.0, -2.5, 3.140625, 65280.0, 2.0**-10]]


def test_bool_round_trips(client, wire):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 2, size=(2, 33)).astype(bool)
    data[0, :2] = [True, False]
    output = round_trip(client, wire, "BOOL", data)
    assert output.dtype == bool
    np.testing.assert_array_equal(output, data)


UTF8_ELEMENTS = [
    b"",
    b"\x00",
    b"a\x00b\x00",
    "grüße, 世界".encode(),
    b"x" * 10_000,
    b"\x00\x00\x00\x00",
    b"trailing zeros\x00\x00",
]
NOT_UTF8_ELEMENTS = [b"\xff\xfe\x80 not utf-8", b"\xc3"]


def test_bytes_round_trip_with_awkward_elements(client, wire):
    # JSON strings are text: bytes that are not UTF-8 travel only as binary
    # data (tritonclient refuses to put them into JSON inputs, and the
    # server into JSON outputs; see test_bytes_that_are_not_utf8_*).
    elements = UTF8_ELEMENTS if wire.json_inputs or wire.json_outputs else UTF8_ELEMENTS + NOT_UTF8_ELEMENTS
    data = np.array([elements, list(reversed(elements))], dtype=np.object_)
    output = round_trip(client, wire, "BYTES", data)
    assert output.tolist() == data.tolist()


def test_bytes_of_only_empty_strings(client, wire):
    data = np.array([[b"", b"", b""]], dtype=np.object_)
    assert round_trip(client, wire, "BYTES", data).tolist() == [[b"", b"", b""]]


@pytest.mark.wires(Wire("http", binary_inputs=True, binary_outputs=False))
def test_bytes_that_are_not_utf8_cannot_be_json_outputs(client, wire):
    # JSON cannot carry them, so the server answers 400 and says to ask for
    # binary data instead of sending something else.
    data = np.array([[b"ok", b"\xff\xfe"]], dtype=np.object_)
    inputs = [wire.input("INPUT0", data, "BYTES")]
    expect_error(
        client,
        lambda: wire.infer(client, "identity_bytes", inputs),
        "INVALID_ARGUMENT",
        "identity_bytes",
        "OUTPUT0",
        "not UTF-8",
        "binary data",
    )
    # The same request with a binary output works.
    binary = [wire.module.InferRequestedOutput("OUTPUT0", binary_data=True)]
    result = wire.infer(client, "identity_bytes", inputs, outputs=binary)
    assert as_numpy(result, "OUTPUT0").tolist() == data.tolist()


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_empty_tensor_round_trips(client, wire, datatype):
    dtype = np.object_ if datatype == "BYTES" else np.float32
    data = np.zeros((2, 0), dtype=dtype)
    output = round_trip(client, wire, datatype, data)
    assert output.shape == (2, 0)


@pytest.mark.parametrize("batch", [1, 4])
def test_batch_sizes_up_to_the_autocompleted_limit(client, wire, batch):
    data = np.arange(batch * 5, dtype=np.int64).reshape(batch, 5)
    np.testing.assert_array_equal(round_trip(client, wire, "INT64", data), data)
