"""Pure-JSON inference with the real curl binary, as a shell user or a
platform health probe would send it: every datatype through its identity
model, with `data` flat and nested, compared value for value."""

import json

import pytest

from http_requests import curl

JSON_HEADERS = ("-H", "Content-Type: application/json")

# Six values per datatype (shape [2, 3]), extremes included; floats are
# exactly representable in their type and print the same in JSON.
VALUES = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 255, 1, 128, 7, 200],
    "UINT16": [0, 65535, 1, 32768, 7, 40000],
    "UINT32": [0, 4294967295, 1, 2147483648, 7, 3000000000],
    "UINT64": [0, 18446744073709551615, 1, 9223372036854775808, 7, 10**19],
    "INT8": [-128, 127, 0, -1, 1, 100],
    "INT16": [-32768, 32767, 0, -1, 1, 1000],
    "INT32": [-(2**31), 2**31 - 1, 0, -1, 1, 123456789],
    "INT64": [-(2**63), 2**63 - 1, 0, -1, 1, 1234567890123456789],
    "FP16": [0.5, -2.0, 65504.0, -65504.0, 3.140625, 0.0009765625],
    "BF16": [1.5, -256.0, 3.140625, 65280.0, 0.0078125, -0.25],
    "FP32": [0.375, -2.5, 16777216.0, -0.15625, 1024.5, 0.0],
    "FP64": [0.1, -1e300, 2.5, 123456.789, 1e-300, -0.0],
    "BYTES": ["", "a", "héllo, 世界", "with space", "nul\u0000inside", "10"],
}


def nested(values):
    return [values[:3], values[3:]]


def identity_infer(http_url, datatype, data, shape=(2, 3)):
    body = {"inputs": [{"name": "INPUT0", "shape": list(shape), "datatype": datatype, "data": data}]}
    return curl(http_url, f"/v2/models/identity_{datatype.lower()}/infer", *JSON_HEADERS, data=json.dumps(body))


@pytest.mark.parametrize("layout", ["flat", "nested"])
@pytest.mark.parametrize("datatype", VALUES)
def test_json_data_round_trips(http_url, datatype, layout):
    values = VALUES[datatype]
    response = identity_infer(http_url, datatype, values if layout == "flat" else nested(values))
    assert response.status == 200, response.body
    answer = response.json()
    assert answer["model_name"] == f"identity_{datatype.lower()}"
    assert answer["model_version"] == "1"
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("OUTPUT0", datatype, [2, 3])
    # JSON outputs are flat, row-major, whatever the request's nesting.
    assert output["data"] == values
    # Same values, and the same JSON types: no 1.0 for True, no "1" for 1.
    assert [type(value) for value in output["data"]] == [type(value) for value in values]


def test_fp64_json_values_parse_exactly(http_url):
    # Python (and tritonclient) write the shortest decimal that reads back
    # as the same double; the server must read it back to that double, not
    # to a neighbour one unit in the last place away.
    values = [950.8318268926117, 625.7293982571508, 0.1, 2.2250738585072014e-308]
    response = identity_infer(http_url, "FP64", values, shape=(1, 4))
    assert response.status == 200, response.body
    assert response.json()["outputs"][0]["data"] == values


def test_requested_outputs_in_pure_json(http_url):
    # Only the named output comes back, as JSON because it asks for it.
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}}],
    }
    response = curl(http_url, "/v2/models/simple/infer", *JSON_HEADERS, data=json.dumps(body))
    assert response.status == 200, response.body
    (output,) = response.json()["outputs"]
    assert output["name"] == "OUTPUT0"
    assert output["data"] == list(range(1, 17))
