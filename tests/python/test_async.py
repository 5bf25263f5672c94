"""Concurrent requests: tritonclient's callback-based `async_infer` and its
asyncio client."""

import asyncio
import queue

import tritonclient.grpc.aio as grpcclient_aio

from model_requests import RPC_TIMEOUT_S, check_simple_result, simple_data, simple_inputs

REQUESTS = 24


def test_async_infer_callbacks(client):
    operands = {f"async-{n}": simple_data(batch=1 + n % 8, seed=n) for n in range(REQUESTS)}
    done = queue.Queue()
    for request_id, (a, b) in operands.items():
        client.async_infer(
            "simple",
            simple_inputs(a, b),
            callback=lambda result, error, request_id=request_id: done.put((request_id, result, error)),
            request_id=request_id,
            client_timeout=RPC_TIMEOUT_S,
        )
    answered = set()
    for _ in range(REQUESTS):
        request_id, result, error = done.get(timeout=RPC_TIMEOUT_S)
        assert error is None, f"{request_id}: {error}"
        assert result.get_response().id == request_id
        check_simple_result(result, *operands[request_id])
        answered.add(request_id)
    assert answered == set(operands)


def test_asyncio_client_concurrent_requests(url):
    operands = [simple_data(batch=1 + n % 8, seed=100 + n) for n in range(REQUESTS)]

    async def run_all():
        async with grpcclient_aio.InferenceServerClient(url=url) as client:
            assert await client.is_server_ready()
            calls = [
                client.infer("simple", simple_inputs(a, b), request_id=str(n), client_timeout=RPC_TIMEOUT_S)
                for n, (a, b) in enumerate(operands)
            ]
            return await asyncio.gather(*calls)

    results = asyncio.run(asyncio.wait_for(run_all(), timeout=60))
    assert len(results) == REQUESTS
    for n, result in enumerate(results):
        assert result.get_response().id == str(n)
        check_simple_result(result, *operands[n])


def test_asyncio_client_metadata(url):
    async def metadata():
        async with grpcclient_aio.InferenceServerClient(url=url) as client:
            return await client.get_model_metadata("simple"), await client.is_model_ready("no_such_model")

    simple, unknown_ready = asyncio.run(asyncio.wait_for(metadata(), timeout=30))
    assert simple.name == "simple"
    assert [tensor.name for tensor in simple.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert unknown_ready is False


def test_asyncio_stream(url):
    operands = [simple_data(batch=1 + n % 8, seed=200 + n) for n in range(10)]

    async def requests():
        for n, (a, b) in enumerate(operands):
            yield {"model_name": "simple", "inputs": simple_inputs(a, b), "request_id": f"aio-{n}"}

    async def run_stream():
        async with grpcclient_aio.InferenceServerClient(url=url) as client:
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
