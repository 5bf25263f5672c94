"""What the wire allows: compressed requests and responses, and messages far
beyond gRPC's default 4 MB limit, over gRPC and HTTP. HTTP request JSON,
raw binary and decompressed bodies are limited by --http-max-input-size
(64 MiB by default; see test_http_limits.py for what happens past it)."""

import queue
import time

import numpy as np
import pytest

from model_requests import check_simple_result, collect_into, default_wire, simple_data, simple_inputs
from protocols import GRPC, HTTP, Wire, as_numpy
from server_process import EXAMPLE_MODELS

DEFAULT_HTTP_LIMIT = 64 * 1024 * 1024


def compressed(wire, algorithm):
    """`wire` with `algorithm` for requests, and over HTTP for responses too."""
    if wire.protocol == "grpc":
        return wire
    return Wire("http", wire.binary_inputs, wire.binary_outputs, algorithm, algorithm)


def compression_arguments(protocol, algorithm):
    return {"compression_algorithm": algorithm} if protocol == "grpc" else {}


@pytest.mark.wires(GRPC, HTTP, Wire("http", binary_inputs=False, binary_outputs=False))
@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client, wire, algorithm):
    wire = compressed(wire, algorithm)
    a, b = simple_data(8, seed=21)
    result = wire.infer(
        client, "simple", simple_inputs(a, b, wire), **compression_arguments(wire.protocol, algorithm)
    )
    check_simple_result(result, a, b)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_large_bytes_request(client, protocol, algorithm):
    # Repetitive text compresses well, so the compressed body is small while
    # the decompressed one is over 4 MB.
    wire = compressed(default_wire(client), algorithm)
    elements = np.array([[b"abc" * 200_000, b"\x00" * 5_000_000]], dtype=np.object_)
    result = wire.infer(
        client,
        "identity_bytes",
        [wire.input("INPUT0", elements, "BYTES")],
        client_timeout=60,
        **compression_arguments(protocol, algorithm),
    )
    assert as_numpy(result, "OUTPUT0").tolist() == elements.tolist()


def test_compressed_stream(grpc_client):
    answers = queue.Queue()
    grpc_client.start_stream(callback=collect_into(answers), stream_timeout=30, compression_algorithm="gzip")
    try:
        operands = [simple_data(2, seed=30 + n) for n in range(5)]
        for n, (a, b) in enumerate(operands):
            grpc_client.async_stream_infer("simple", simple_inputs(a, b), request_id=str(n))
        received = [answers.get(timeout=20) for _ in operands]
    finally:
        grpc_client.stop_stream()
    for n, ((result, error), (a, b)) in enumerate(zip(received, operands, strict=True)):
        assert error is None, error
        assert result.get_response().id == str(n)
        check_simple_result(result, a, b)


# 64 MB over gRPC. Over HTTP the body also holds the JSON header, and the
# whole body must stay within the default 64 MiB limit: 16 KiB less data.
LARGE_ELEMENTS = {"grpc": 16 * 1024 * 1024, "http": (DEFAULT_HTTP_LIMIT - 16 * 1024) // 4}


def test_64_mb_tensor_round_trips(client, protocol):
    count = LARGE_ELEMENTS[protocol]
    wire = default_wire(client)
    # Distinct values everywhere, so a dropped or repeated chunk shows.
    data = np.arange(count, dtype=np.float32).reshape(1, count)
    started = time.monotonic()
    result = wire.infer(client, "identity_fp32", [wire.input("INPUT0", data)], client_timeout=120)
    elapsed = time.monotonic() - started
    output = as_numpy(result, "OUTPUT0")
    assert output.shape == (1, count)
    np.testing.assert_array_equal(output, data)
    assert elapsed < 60, f"a {data.nbytes / 2**20:.0f} MiB round trip took {elapsed:.1f} s"


@pytest.mark.parametrize("level", ["low", "medium", "high"])
def test_compressed_grpc_answers_decode_in_tritonclient(launch_server, level):
    # The server compresses inference answers in an encoding gRPC's Python
    # client accepts (gzip or deflate by level); the client must read them
    # as it reads plain ones, unary and streamed.
    server = launch_server(EXAMPLE_MODELS, extra=[f"--grpc-infer-response-compression-level={level}"])
    with server.client("grpc") as grpc_client:
        a, b = simple_data(8, seed=41)
        check_simple_result(grpc_client.infer("simple", simple_inputs(a, b)), a, b)
        answers = queue.Queue()
        grpc_client.start_stream(callback=collect_into(answers), stream_timeout=30)
        try:
            grpc_client.async_stream_infer("simple", simple_inputs(a, b), request_id="s")
            result, error = answers.get(timeout=20)
        finally:
            grpc_client.stop_stream()
        assert error is None, error
        check_simple_result(result, a, b)
        assert grpc_client.get_model_metadata("simple").name == "simple"
