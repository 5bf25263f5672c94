"""What the wire allows: compressed requests and messages far beyond gRPC's
default 4 MB limit."""

import queue
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from model_requests import check_simple_result, collect_into, simple_data, simple_inputs


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client, algorithm):
    a, b = simple_data(8, seed=21)
    result = client.infer("simple", simple_inputs(a, b), compression_algorithm=algorithm, client_timeout=20)
    check_simple_result(result, a, b)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_large_bytes_request(client, algorithm):
    # Repetitive text compresses well, so the compressed frame is small while
    # the decompressed message is over 4 MB.
    elements = np.array([[b"abc" * 200_000, b"\x00" * 5_000_000]], dtype=np.object_)
    tensor = grpcclient.InferInput("INPUT0", [1, 2], "BYTES").set_data_from_numpy(elements)
    result = client.infer("identity_bytes", [tensor], compression_algorithm=algorithm, client_timeout=60)
    assert result.as_numpy("OUTPUT0").tolist() == elements.tolist()


def test_compressed_stream(client):
    answers = queue.Queue()
    client.start_stream(callback=collect_into(answers), stream_timeout=30, compression_algorithm="gzip")
    try:
        operands = [simple_data(2, seed=30 + n) for n in range(5)]
        for n, (a, b) in enumerate(operands):
            client.async_stream_infer("simple", simple_inputs(a, b), request_id=str(n))
        received = [answers.get(timeout=20) for _ in operands]
    finally:
        client.stop_stream()
    for n, ((result, error), (a, b)) in enumerate(zip(received, operands, strict=True)):
        assert error is None, error
        assert result.get_response().id == str(n)
        check_simple_result(result, a, b)


def test_64_mb_tensor_round_trips(client):
    count = 16 * 1024 * 1024
    # Distinct values everywhere, so a dropped or repeated chunk shows.
    data = np.arange(count, dtype=np.float32).reshape(1, count)
    tensor = grpcclient.InferInput("INPUT0", [1, count], "FP32").set_data_from_numpy(data)
    started = time.monotonic()
    result = client.infer("identity_fp32", [tensor], client_timeout=120)
    elapsed = time.monotonic() - started
    output = result.as_numpy("OUTPUT0")
    assert output.shape == (1, count)
    np.testing.assert_array_equal(output, data)
    assert elapsed < 60, f"a 64 MB round trip took {elapsed:.1f} s"
