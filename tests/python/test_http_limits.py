"""--http-max-input-size: bodies past the limit, after decompression, get a
413 with a JSON error however they arrive (declared length, chunked,
compressed, with Expect: 100-continue), bodies at the limit are read, and
the server keeps serving afterwards. As in Triton, the limit bounds the
JSON (with any data in it), raw binary bodies and decompressed bodies, not
the binary tensor data after a JSON header. A server of its own runs with
a 1 MiB limit."""

import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from http_requests import assert_http_serves, curl, expect_error_response, headers_only, http_request, post
from server_process import SHARED_REPOSITORIES, server_args, start_server

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def limited_url():
    server = start_server(server_args(*SHARED_REPOSITORIES, extra=[f"--http-max-input-size={LIMIT}"]))
    try:
        yield server.http_url
    finally:
        assert server.stop() == 0, server.log


def identity_uint8_body(total_size):
    """A binary-data request to identity_uint8 whose body (JSON header plus
    tensor bytes) is exactly `total_size` bytes; returns (body, header length)."""
    count = total_size
    for _ in range(5):  # the header's length depends on the count's digits
        tensor = {"name": "INPUT0", "shape": [1, count], "datatype": "UINT8", "parameters": {"binary_data_size": count}}
        outputs = [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]
        header = json.dumps({"inputs": [tensor], "outputs": outputs}).encode()
        count = total_size - len(header)
    assert len(header) + count == total_size
    data = np.arange(count, dtype=np.uint64).astype(np.uint8).tobytes()
    return header + data, len(header)


def send_identity_uint8(url, total_size, **headers):
    body, header_length = identity_uint8_body(total_size)
    headers = {"Inference-Header-Content-Length": str(header_length), **headers}
    return post(url, "/v2/models/identity_uint8/infer", body, headers), body[header_length:]


def expect_too_large(response):
    expect_error_response(response, 413, str(LIMIT), "--http-max-input-size")


def test_a_body_at_the_limit_is_read(limited_url):
    response, data = send_identity_uint8(limited_url, LIMIT)
    assert response.status == 200, response.body[:500]
    header_length = int(response.headers["inference-header-content-length"])
    assert response.body[header_length:] == data


def test_a_declared_length_one_byte_past_the_limit_is_refused_up_front(limited_url):
    # Answered from the headers, before any of the body is sent, as a client
    # that sends "Expect: 100-continue" waits for; the body need not travel.
    headers = {"Content-Length": str(LIMIT + 1), "Expect": "100-continue"}
    expect_too_large(headers_only(limited_url, "POST", "/v2/models/identity_uint8/infer", headers))
    assert_http_serves(limited_url)


def post_chunked(url, body, header_length):
    """Posts `body` to identity_uint8 in 64 KiB chunks: no Content-Length to
    judge by, so the server must count as it reads. (http.client sends a
    generator body with Transfer-Encoding: chunked.)"""
    chunks = (body[start : start + 65536] for start in range(0, len(body), 65536))
    headers = {"Inference-Header-Content-Length": str(header_length)}
    return http_request(url, "POST", "/v2/models/identity_uint8/infer", chunks, headers)


# The second size: as in Triton, only the JSON header counts, so
# tritonclient's binary inputs may be larger than --http-max-input-size.
@pytest.mark.parametrize("size", [LIMIT - 1000, 3 * LIMIT], ids=["within-the-limit", "binary-data-past-the-limit"])
def test_a_chunked_binary_data_body_is_read(limited_url, size):
    body, header_length = identity_uint8_body(size)
    response = post_chunked(limited_url, body, header_length)
    assert response.status == 200, response.body[:500]
    assert response.body[int(response.headers["inference-header-content-length"]) :] == body[header_length:]


def test_a_chunked_body_past_the_limit_is_refused(limited_url):
    # A raw binary body is all tensor data, and the limit bounds it.
    expect_too_large(post_chunked(limited_url, bytes(LIMIT + 1000), 0))
    assert_http_serves(limited_url)


def test_a_json_header_past_the_limit_is_refused(limited_url):
    # Refused from the headers, so the body is not sent: a client still
    # sending it when the server answers and closes could get EPIPE instead
    # of the answer (the test failed that way once under load).
    headers = {"Inference-Header-Content-Length": str(LIMIT + 1), "Content-Length": str(LIMIT + 10)}
    response = headers_only(limited_url, "POST", "/v2/models/identity_uint8/infer", headers)
    expect_error_response(response, 413, "JSON")
    assert_http_serves(limited_url)


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_small_compressed_body_that_decompresses_past_the_limit_is_refused(limited_url, encoding, compress):
    body, header_length = identity_uint8_body(4 * LIMIT)
    # Zeros compress about a thousandfold: a few KiB on the wire.
    body = body[:header_length] + bytes(len(body) - header_length)
    compressed = compress(body)
    assert len(compressed) < LIMIT // 50
    headers = {"Inference-Header-Content-Length": str(header_length), "Content-Encoding": encoding}
    expect_too_large(post(limited_url, "/v2/models/identity_uint8/infer", compressed, headers))
    assert_http_serves(limited_url)


def test_a_compressed_body_within_the_limit_is_read(limited_url):
    body, header_length = identity_uint8_body(LIMIT // 2)
    headers = {"Inference-Header-Content-Length": str(header_length), "Content-Encoding": "gzip"}
    response = post(limited_url, "/v2/models/identity_uint8/infer", gzip.compress(body), headers)
    assert response.status == 200, response.body[:500]


def test_curl_with_expect_100_continue_gets_413(limited_url):
    # curl asks "Expect: 100-continue" before a body over 1 MiB; the answer
    # to that must be the 413, not a hang or a reset.
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 1], "datatype": "BYTES", "data": ["x" * 2 * LIMIT]}]})
    response = curl(limited_url, "/v2/models/identity_bytes/infer", "-H", "Content-Type: application/json", data=body)
    expect_too_large(response)
    assert_http_serves(limited_url)


def test_tritonclient_sees_413(limited_url):
    # Sent as JSON data, which the limit bounds.
    data = np.zeros((1, 2 * LIMIT // 4), dtype=np.float32)
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32").set_data_from_numpy(data, binary_data=False)
    with httpclient.InferenceServerClient(limited_url, connection_timeout=5, network_timeout=20) as client:
        with pytest.raises(InferenceServerException) as caught:
            client.infer("identity_fp32", [tensor])
        assert caught.value.status() == "413"
        assert "--http-max-input-size" in caught.value.message()
    assert_http_serves(limited_url)


def test_default_limit_is_64_mib(http_url):
    # Refused up front by its declared length, so nothing is sent past the
    # headers; a body of exactly 64 MiB would be read.
    declared = {"Content-Length": str(64 * 2**20 + 1)}
    response = headers_only(http_url, "POST", "/v2/models/identity_uint8/infer", declared)
    expect_error_response(response, 413, "67108864", "--http-max-input-size")
    assert_http_serves(http_url)

