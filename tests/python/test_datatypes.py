"""Every protocol datatype round-trips unchanged through an identity model,
extreme values included. Floats are compared bit for bit, so NaN payloads,
signed zeros and subnormals must survive too."""

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from model_requests import RPC_TIMEOUT_S

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


def round_trip(client, datatype, data):
    model = f"identity_{datatype.lower()}"
    tensor = grpcclient.InferInput("INPUT0", list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    result = client.infer(model, [tensor], client_timeout=RPC_TIMEOUT_S)
    (output,) = result.get_response().outputs
    assert (output.name, output.datatype, list(output.shape)) == ("OUTPUT0", datatype, list(data.shape))
    return result.as_numpy("OUTPUT0")


def assert_same_bits(actual, expected):
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    bits = SAME_WIDTH_BITS[expected.dtype.itemsize]
    np.testing.assert_array_equal(actual.view(bits), expected.view(bits))


@pytest.mark.parametrize("datatype", INTEGER_TYPES)
def test_integers_round_trip(client, datatype):
    dtype = INTEGER_TYPES[datatype]
    info = np.iinfo(dtype)
    rng = np.random.default_rng(len(datatype))
    data = rng.integers(info.min, info.max, size=(3, 40), dtype=dtype, endpoint=True)
    data[0, :4] = [info.min, info.max, 0, info.max - 1]
    output = round_trip(client, datatype, data)
    assert output.dtype == dtype
    np.testing.assert_array_equal(output, data)


def float_specials(dtype):
    finfo = ml_dtypes.finfo(dtype) if dtype == ml_dtypes.bfloat16 else np.finfo(dtype)
    return np.array(
        [
            np.nan,
            -np.nan,
            np.inf,
            -np.inf,
            0.0,
            -0.0,
            finfo.max,
            finfo.min,
            finfo.tiny,
            finfo.smallest_subnormal,
            finfo.eps,
        ],
        dtype=dtype,
    )


@pytest.mark.parametrize("datatype", FLOAT_TYPES)
def test_floats_round_trip_bit_for_bit(client, datatype):
    dtype = FLOAT_TYPES[datatype]
    rng = np.random.default_rng(len(datatype) + 100)
    data = (rng.standard_normal((4, 32)) * 1000).astype(dtype)
    specials = float_specials(dtype)
    data[1, : len(specials)] = specials
    # A NaN with a payload: identity must copy bits, not canonicalise them.
    bits = SAME_WIDTH_BITS[np.dtype(dtype).itemsize]
    data.view(bits)[2, 0] = data.view(bits)[1, 0] | bits(1)
    output = round_trip(client, datatype, data)
    assert_same_bits(output, data)


def test_bf16_values_arrive_as_bfloat16(client):
    data = np.array([[1.0, -2.5, 3.140625, 65280.0, 2.0**-10]], dtype=ml_dtypes.bfloat16)
    output = round_trip(client, "BF16", data)
    assert output.dtype == ml_dtypes.bfloat16
    assert output.astype(np.float32).tolist() == [[1.0, -2.5, 3.140625, 65280.0, 2.0**-10]]


def test_bool_round_trips(client):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 2, size=(2, 33)).astype(bool)
    data[0, :2] = [True, False]
    output = round_trip(client, "BOOL", data)
    assert output.dtype == bool
    np.testing.assert_array_equal(output, data)


def test_bytes_round_trip_with_awkward_elements(client):
    elements = [
        b"",
        b"\x00",
        b"a\x00b\x00",
        b"\xff\xfe\x80 not utf-8",
        "grüße, 世界".encode(),
        b"x" * 10_000,
        b"\x00\x00\x00\x00",
        b"trailing zeros\x00\x00",
    ]
    data = np.array([elements, list(reversed(elements))], dtype=np.object_)
    output = round_trip(client, "BYTES", data)
    assert output.tolist() == data.tolist()


def test_bytes_of_only_empty_strings(client):
    data = np.array([[b"", b"", b""]], dtype=np.object_)
    assert round_trip(client, "BYTES", data).tolist() == [[b"", b"", b""]]


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_empty_tensor_round_trips(client, datatype):
    dtype = np.object_ if datatype == "BYTES" else np.float32
    data = np.zeros((2, 0), dtype=dtype)
    output = round_trip(client, datatype, data)
    assert output.shape == (2, 0)


@pytest.mark.parametrize("batch", [1, 4])
def test_batch_sizes_up_to_the_autocompleted_limit(client, batch):
    data = np.arange(batch * 5, dtype=np.int64).reshape(batch, 5)
    np.testing.assert_array_equal(round_trip(client, "INT64", data), data)
