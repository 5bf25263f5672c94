"""The KServe v2 REST routes and their errors, with the real curl binary:
every error is a JSON `{"error": "..."}` with the status Triton uses and a
message that says what is wrong, and the server keeps serving after it."""

import json

import pytest

from http_requests import SIMPLE_JSON, assert_http_serves, curl, expect_error_response

JSON_HEADERS = ("-H", "Content-Type: application/json")


def post_infer(http_url, path, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return curl(http_url, path, *JSON_HEADERS, data=data)


def simple_body(**changes):
    """SIMPLE_JSON with INPUT0 changed."""
    body = json.loads(json.dumps(SIMPLE_JSON))
    body["inputs"][0].update(changes)
    return body


# id: (path, body, status, fragments of the error message)
INFER_ERRORS = {
    "not-json": ("/v2/models/simple/infer", "this is not json", 400, ["simple", "not a valid inference request"]),
    "truncated-json": (
        "/v2/models/simple/infer",
        json.dumps(SIMPLE_JSON)[:-7],
        400,
        ["simple", "not a valid inference request", "EOF"],
    ),
    "inputs-not-a-list": (
        "/v2/models/simple/infer",
        {"inputs": {"INPUT0": [1, 2]}},
        400,
        ["simple", "not a valid inference request", "expected a sequence"],
    ),
    "json-array-body": ("/v2/models/simple/infer", [1, 2, 3], 400, ["simple", "not a valid inference request"]),
    "input-without-datatype": (
        "/v2/models/simple/infer",
        {"inputs": [{"name": "INPUT0", "shape": [1, 16], "data": list(range(16))}]},
        400,
        ["simple", "datatype"],
    ),
    "input-without-data": (
        "/v2/models/simple/infer",
        simple_body(data=None),
        400,
        ["simple", "INPUT0", "no data"],
    ),
    "unknown-model": ("/v2/models/no_such_model/infer", SIMPLE_JSON, 404, ["no_such_model"]),
    "unknown-version": ("/v2/models/simple/versions/7/infer", SIMPLE_JSON, 404, ["simple", "version 7"]),
    "non-numeric-version": ("/v2/models/simple/versions/abc/infer", SIMPLE_JSON, 400, ["simple", "'abc'"]),
    "wrong-shape": (
        "/v2/models/simple/infer",
        simple_body(shape=[1, 15], data=list(range(15))),
        400,
        ["simple", "INPUT0", "[1,15]", "expected [-1,16]"],
    ),
    "data-does-not-fill-the-shape": (
        "/v2/models/simple/infer",
        simple_body(data=list(range(15))),
        400,
        ["simple", "INPUT0", "15 values", "expected 16", "[1,16]"],
    ),
    "wrong-datatype": (
        "/v2/models/simple/infer",
        simple_body(datatype="FP32"),
        400,
        ["simple", "INPUT0", "FP32", "expected INT32"],
    ),
    "unknown-datatype": (
        "/v2/models/simple/infer",
        simple_body(datatype="FLOAT"),
        400,
        ["simple", "INPUT0", "'FLOAT'", "INT32", "BYTES"],
    ),
    "value-out-of-range": (
        "/v2/models/simple/infer",
        simple_body(data=[2**31] + list(range(15))),
        400,
        ["simple", "INPUT0", "2147483648", "does not fit INT32"],
    ),
    "value-of-the-wrong-kind": (
        "/v2/models/simple/infer",
        simple_body(data=["1"] + list(range(15))),
        400,
        ["simple", "INPUT0", "expected an integer"],
    ),
}


@pytest.mark.parametrize("case", INFER_ERRORS)
def test_bad_infer_request_is_reported_and_server_keeps_serving(http_url, case):
    path, body, status, fragments = INFER_ERRORS[case]
    expect_error_response(post_infer(http_url, path, body), status, *fragments)
    assert_http_serves(http_url)


def test_get_on_the_infer_route_is_not_allowed(http_url):
    response = curl(http_url, "/v2/models/simple/infer")
    expect_error_response(response, 405, "GET", "/v2/models/simple/infer")


def test_unknown_route_is_a_json_404(http_url):
    expect_error_response(curl(http_url, "/v2/nothing/here"), 404, "/v2/nothing/here")
    expect_error_response(curl(http_url, "/no/such/route", data="{}"), 404, "POST", "/no/such/route")


def test_server_metadata_route(http_url):
    response = curl(http_url, "/v2")
    assert response.status == 200
    metadata = response.json()
    assert metadata["name"] == "triton"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize(
    "path, status",
    [
        ("/v2/health/live", 200),
        ("/v2/health/ready", 200),
        ("/v2/models/simple/ready", 200),
        ("/v2/models/simple/versions/1/ready", 200),
        # Triton answers 400, not 404, for a model or version that is not ready.
        ("/v2/models/no_such_model/ready", 400),
        ("/v2/models/simple/versions/2/ready", 400),
    ],
)
def test_health_routes(http_url, path, status):
    assert curl(http_url, path).status == status


def test_metadata_shapes_are_json_numbers(http_url):
    # Triton's HTTP API writes int64 shapes as numbers (gRPC's JSON mapping
    # would write strings).
    response = curl(http_url, "/v2/models/simple/versions/1")
    assert response.status == 200
    assert response.json()["inputs"][0]["shape"] == [-1, 16]


@pytest.mark.parametrize(
    "path, status, fragments",
    [
        ("/v2/models/no_such_model", 404, ["no_such_model"]),
        ("/v2/models/simple/versions/7", 404, ["simple", "7"]),
        ("/v2/models/simple/versions/abc", 400, ["simple", "'abc'"]),
        ("/v2/models/no_such_model/config", 404, ["no_such_model"]),
        ("/v2/models/simple/versions/7/config", 404, ["simple", "7"]),
    ],
)
def test_metadata_and_config_errors(http_url, path, status, fragments):
    expect_error_response(curl(http_url, path), status, *fragments)
