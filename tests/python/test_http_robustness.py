"""Broken HTTP on the wire: requests cut off mid-body, bytes that are not
HTTP, bodies that do not match their Content-Encoding. Each gets a clean
error (or, for a request that never arrives whole, a closed connection),
and afterwards the server still answers /v2/health/ready and `simple`."""

import gzip
import json

import pytest

from http_requests import (
    SIMPLE_JSON,
    assert_http_serves,
    expect_error_response,
    post,
    raw_exchange,
    status_of,
)

REQUEST_HEAD = (
    b"POST /v2/models/simple/infer HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 1000\r\n"
    b"\r\n"
)


@pytest.mark.parametrize(
    "payload",
    [
        REQUEST_HEAD + b'{"inputs":',
        REQUEST_HEAD[:40],
        b"",
    ],
    ids=["body-cut-off", "headers-cut-off", "nothing"],
)
def test_request_cut_off_by_the_client(http_url, payload):
    # The client sends part of a request and closes its side. There is no
    # whole request to answer: the server may close the connection or say
    # 400, but must not hang on to it or fall over.
    answer = raw_exchange(http_url, payload, close_after_send=True)
    assert status_of(answer) in (None, 400), answer[:300]
    assert_http_serves(http_url)


def test_client_vanishes_mid_body(http_url):
    # Closed outright, without waiting for any answer.
    answer = raw_exchange(http_url, REQUEST_HEAD + b"0123456789", close_after_send=True, timeout=0.2)
    assert status_of(answer) in (None, 400), answer[:300]
    assert_http_serves(http_url)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS ClientHello
        b"\x00\xff\xfe garbage \r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v2/models/simple/infer HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(100),  # an HTTP/2 preface, then junk frames
    ],
    ids=["tls-hello", "binary-junk", "bad-version", "bad-content-length", "http2-preface-then-junk"],
)
def test_bytes_that_are_not_http(http_url, garbage):
    answer = raw_exchange(http_url, garbage)
    assert status_of(answer) in (None, 400), answer[:300]
    assert_http_serves(http_url)


def test_unsupported_content_encoding_is_a_json_error(http_url):
    # Every error is {"error": "..."} (README); the status may be 415 (what
    # HTTP has for it) or 400, and the message must name the encoding.
    response = post(http_url, "/v2/models/simple/infer", SIMPLE_JSON, {"Content-Encoding": "compress-9"})
    assert response.status in (400, 415), response
    expect_error_response(response, response.status, "compress-9")
    assert_http_serves(http_url)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_body_that_is_not_what_its_content_encoding_says(http_url, encoding):
    plain = json.dumps(SIMPLE_JSON).encode()
    response = post(http_url, "/v2/models/simple/infer", plain, {"Content-Encoding": encoding})
    expect_error_response(response, 400, "request body")
    assert_http_serves(http_url)


def test_truncated_gzip_body(http_url):
    compressed = gzip.compress(json.dumps(SIMPLE_JSON).encode())
    half = compressed[: len(compressed) // 2]
    response = post(http_url, "/v2/models/simple/infer", half, {"Content-Encoding": "gzip"})
    expect_error_response(response, 400)
    assert_http_serves(http_url)
