"""ModelStreamInfer through tritonclient's stream API: responses come back in
the order the requests were sent, and a bad request is reported on the
stream without closing it."""

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2

from model_requests import (
    RPC_TIMEOUT_S,
    assert_simple_works,
    check_simple_result,
    collect_into,
    simple_data,
    simple_inputs,
)

GOOD_REQUESTS = 50


def bad_shape_inputs():
    a, b = simple_data(1)
    return simple_inputs(a[:, :15], b[:, :15])


def collect(events, count):
    received = []
    for _ in range(count):
        received.append(events.get(timeout=RPC_TIMEOUT_S))
    with pytest.raises(queue.Empty):
        # Nothing beyond one callback per request.
        events.get(timeout=0.2)
    return received


def test_stream_keeps_order_and_survives_bad_requests(grpc_client):
    events = queue.Queue()
    grpc_client.start_stream(callback=collect_into(events), stream_timeout=60)
    try:
        # Each entry: ("good", request id, operands) or ("bad", fragment the error must contain).
        sent = []
        for n in range(GOOD_REQUESTS):
            a, b = simple_data(batch=1 + n % 8, seed=1000 + n)
            request_id = f"stream-{n}"
            grpc_client.async_stream_infer("simple", simple_inputs(a, b), request_id=request_id)
            sent.append(("good", request_id, (a, b)))
            if n % 10 == 3:
                grpc_client.async_stream_infer("simple", bad_shape_inputs(), request_id=f"bad-shape-{n}")
                sent.append(("bad", "'simple': input 'INPUT0' has shape [1,15]"))
            if n % 10 == 7:
                grpc_client.async_stream_infer("no_such_model", simple_inputs(a, b), request_id=f"bad-model-{n}")
                sent.append(("bad", "no_such_model"))
        received = collect(events, len(sent))
    finally:
        grpc_client.stop_stream()

    for expected, (result, error) in zip(sent, received, strict=True):
        if expected[0] == "good":
            _, request_id, operands = expected
            assert error is None, f"{request_id}: {error}"
            assert result.get_response().id == request_id
            check_simple_result(result, *operands)
        else:
            assert result is None
            assert expected[1] in error.message(), error.message()
    assert_simple_works(grpc_client)


def test_stream_longer_than_the_server_window(grpc_client):
    # More requests than the server lets run ahead of its responses (256),
    # sent without waiting, so its back-pressure is exercised.
    count = 600
    events = queue.Queue()
    a, b = simple_data(1, seed=77)
    grpc_client.start_stream(callback=collect_into(events), stream_timeout=60)
    try:
        for n in range(count):
            grpc_client.async_stream_infer("simple", simple_inputs(a + n, b), request_id=str(n))
        received = collect(events, count)
    finally:
        grpc_client.stop_stream()
    for n, (result, error) in enumerate(received):
        assert error is None, error
        assert result.get_response().id == str(n)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + n + b)


def test_stream_of_bytes_and_fp16_models(grpc_client):
    events = queue.Queue()
    grpc_client.start_stream(callback=collect_into(events), stream_timeout=60)
    try:
        text = np.array([[b"\x00bin\xff", b""]], dtype=np.object_)
        bytes_input = grpcclient.InferInput("INPUT0", [1, 2], "BYTES")
        bytes_input.set_data_from_numpy(text)
        grpc_client.async_stream_infer("identity_bytes", [bytes_input], request_id="bytes")
        halves = np.array([[2.0, 4.0, -8.0, 1.0]], dtype=np.float16)
        fp16_input = grpcclient.InferInput("INPUT", [1, 4], "FP16")
        fp16_input.set_data_from_numpy(halves)
        grpc_client.async_stream_infer("scale_fp16", [fp16_input], request_id="fp16")
        (bytes_result, bytes_error), (fp16_result, fp16_error) = collect(events, 2)
    finally:
        grpc_client.stop_stream()
    assert bytes_error is None and fp16_error is None
    assert bytes_result.get_response().id == "bytes"
    assert bytes_result.as_numpy("OUTPUT0").tolist() == text.tolist()
    assert fp16_result.get_response().id == "fp16"
    np.testing.assert_array_equal(fp16_result.as_numpy("OUTPUT"), halves / 2)


def test_stream_can_be_restarted(grpc_client):
    for round_number in range(3):
        events = queue.Queue()
        grpc_client.start_stream(callback=collect_into(events), stream_timeout=30)
        try:
            a, b = simple_data(2, seed=round_number)
            grpc_client.async_stream_infer("simple", simple_inputs(a, b), request_id=f"round-{round_number}")
            ((result, error),) = collect(events, 1)
        finally:
            grpc_client.stop_stream()
        assert error is None
        assert result.get_response().id == f"round-{round_number}"
        check_simple_result(result, a, b)


def test_every_stream_answer_is_marked_final(grpc_client):
    # Triton marks each answer of a model that is not decoupled as its
    # request's last; clients that ask for empty final responses wait for it.
    events = queue.Queue()
    grpc_client.start_stream(callback=collect_into(events), stream_timeout=30)
    try:
        a, b = simple_data(1, seed=5)
        grpc_client.async_stream_infer(
            "simple", simple_inputs(a, b), request_id="marked", enable_empty_final_response=True
        )
        ((result, error),) = collect(events, 1)
    finally:
        grpc_client.stop_stream()
    assert error is None, error
    response = result.get_response()
    assert response.parameters["triton_final_response"].bool_param is True
    check_simple_result(result, a, b)


def test_a_message_the_server_cannot_read_ends_the_stream_with_its_status(grpc_url):
    # The answers before it still come; then the stream fails with the
    # reason instead of ending as if the client had closed it.
    a, b = simple_data(1, seed=9)
    request = service_pb2.ModelInferRequest(model_name="simple", id="readable")
    for name, values in (("INPUT0", a), ("INPUT1", b)):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(values.astype("<i4").tobytes())
    with grpc.insecure_channel(grpc_url) as channel:
        call = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda message: message,
            response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
        )
        responses = call(iter([request.SerializeToString(), b"\xff\xff\xff"]), timeout=RPC_TIMEOUT_S)
        first = next(responses)
        assert first.error_message == "" and first.infer_response.id == "readable"
        with pytest.raises(grpc.RpcError) as failure:
            next(responses)
    assert failure.value.code() not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED), failure.value
    assert "decode" in failure.value.details().lower(), failure.value.details()
