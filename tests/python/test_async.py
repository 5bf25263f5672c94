"""Concurrent requests: tritonclient's non-blocking `async_infer` (gRPC
callbacks, HTTP InferAsyncRequest handles) and its asyncio clients, over
both protocols; the asyncio stream is gRPC's own."""

import asyncio

import pytest

from model_requests import RPC_TIMEOUT_S, check_simple_result, simple_data, simple_inputs
from protocols import GRPC, HTTP, HTTP_JSON, aio_module, connect, expect_error, response_summary

REQUESTS = 24


@pytest.mark.wires(GRPC, HTTP, HTTP_JSON)
def test_async_infer(url, wire):
    operands = {f"async-{n}": simple_data(batch=1 + n % 8, seed=n) for n in range(REQUESTS)}
    # Several connections, so that HTTP requests really overlap.
    with connect(wire.protocol, url, **({"concurrency": 4} if wire.protocol == "http" else {})) as client:
        pending = {
            request_id: wire.start_infer(client, "simple", simple_inputs(a, b, wire), request_id=request_id)
            for request_id, (a, b) in operands.items()
        }
        for request_id, wait in pending.items():
            result = wait(RPC_TIMEOUT_S)
            assert response_summary(result)["id"] == request_id
            check_simple_result(result, *operands[request_id])


@pytest.mark.wires(GRPC, HTTP)
def test_async_infer_reports_errors(client, wire):
    a, b = simple_data(1, seed=1)
    wait = wire.start_infer(client, "simple", simple_inputs(a[:, :15], b[:, :15], wire))
    expect_error(client, lambda: wait(RPC_TIMEOUT_S), "INVALID_ARGUMENT", "simple", "INPUT0", "[1,15]")


def aio_infer_arguments(protocol):
    # Only gRPC's asyncio client has a per-call deadline; the whole HTTP
    # run is bounded by asyncio.wait_for below.
    return {"client_timeout": RPC_TIMEOUT_S} if protocol == "grpc" else {}


def test_asyncio_client_concurrent_requests(url, protocol):
    operands = [simple_data(batch=1 + n % 8, seed=100 + n) for n in range(REQUESTS)]
    wire = GRPC if protocol == "grpc" else HTTP

    async def run_all():
        async with aio_module(protocol).InferenceServerClient(url=url) as client:
            assert await client.is_server_ready()
            calls = [
                client.infer("simple", simple_inputs(a, b, wire), request_id=str(n), **aio_infer_arguments(protocol))
                for n, (a, b) in enumerate(operands)
            ]
            return await asyncio.gather(*calls)

    results = asyncio.run(asyncio.wait_for(run_all(), timeout=60))
    assert len(results) == REQUESTS
    for n, result in enumerate(results):
        assert response_summary(result)["id"] == str(n)
        check_simple_result(result, *operands[n])


def test_asyncio_client_compressed_request(http_url):
    a, b = simple_data(batch=4, seed=150)

    async def run():
        async with aio_module("http").InferenceServerClient(url=http_url) as client:
            return await client.infer(
                "simple",
                simple_inputs(a, b, HTTP),
                request_compression_algorithm="gzip",
                response_compression_algorithm="deflate",
            )

    check_simple_result(asyncio.run(asyncio.wait_for(run(), timeout=30)), a, b)


def test_asyncio_client_metadata(url, protocol):
    async def metadata():
        async with aio_module(protocol).InferenceServerClient(url=url) as client:
            simple = await client.get_model_metadata("simple", **({"as_json": True} if protocol == "grpc" else {}))
            return simple, await client.is_model_ready("no_such_model")

    simple, unknown_ready = asyncio.run(asyncio.wait_for(metadata(), timeout=30))
    assert simple["name"] == "simple"
    assert [tensor["name"] for tensor in simple["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    assert unknown_ready is False


def test_asyncio_stream(grpc_url):
    operands = [simple_data(batch=1 + n % 8, seed=200 + n) for n in range(10)]

    async def requests():
        for n, (a, b) in enumerate(operands):
            yield {"model_name": "simple", "inputs": simple_inputs(a, b), "request_id": f"aio-{n}"}

    async def run_stream():
        async with aio_module("grpc").InferenceServerClient(url=grpc_url) as client:
            received = []
            async for result, error in client.stream_infer(requests(), stream_timeout=30):
                received.append((result, error))
                if len(received) == len(operands):
                    break
            return received

    received = asyncio.run(asyncio.wait_for(run_stream(), timeout=60))
    for n, ((result, error), (a, b)) in enumerate(zip(received, operands, strict=True)):
        assert error is None, error
        assert result.get_response().id == f"aio-{n}"
        check_simple_result(result, a, b)
