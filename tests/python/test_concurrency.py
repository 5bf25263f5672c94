"""A long request on one model must not hold up requests to another, over
gRPC and HTTP."""

import time

import pytest
from tritonclient.utils import InferenceServerException

from model_requests import (
    assert_simple_works,
    busy_loop_inputs,
    check_simple_result,
    default_wire,
    in_background,
    simple_data,
    simple_inputs,
)
from protocols import as_numpy, connect

CALIBRATION_ITERATIONS = 200_000
BUSY_SECONDS = 3.0
QUICK_REQUESTS = 20
QUICK_LIMIT_S = 0.5


def count(result):
    return as_numpy(result, "COUNT").tolist()


def busy_iterations(client, seconds):
    """busy_loop iterations that take about `seconds` on this machine, and
    the measured time per iteration."""
    wire = default_wire(client)
    # The fastest of two runs: a first run can be slow while ONNX Runtime
    # warms up, which would make the busy request too short.
    timings = []
    for _ in range(2):
        started = time.monotonic()
        calibration = wire.infer(client, "busy_loop", busy_loop_inputs(CALIBRATION_ITERATIONS, wire))
        timings.append(time.monotonic() - started)
        assert count(calibration) == [CALIBRATION_ITERATIONS]
    per_iteration = min(timings) / CALIBRATION_ITERATIONS
    # Aim past `seconds`, but stay bounded should calibration be noisy.
    return min(int(seconds / per_iteration), 50_000_000), per_iteration


def start_busy(protocol, url, iterations):
    """Sends a busy_loop request from another thread without waiting; the
    queue receives (finish time, result, error)."""

    def busy(client):
        wire = default_wire(client)
        return wire.infer(client, "busy_loop", busy_loop_inputs(iterations, wire), client_timeout=120)

    return in_background(protocol, url, busy)


def test_busy_model_does_not_delay_other_models(client, protocol, url):
    iterations, per_iteration = busy_iterations(client, BUSY_SECONDS)
    busy_started = time.monotonic()
    finished = start_busy(protocol, url, iterations)
    wire = default_wire(client)
    quick_times = []
    for n in range(QUICK_REQUESTS):
        a, b = simple_data(1 + n % 8, seed=500 + n)
        begin = time.monotonic()
        result = wire.infer(client, "simple", simple_inputs(a, b, wire))
        quick_times.append(time.monotonic() - begin)
        check_simple_result(result, a, b)
    quick_done = time.monotonic()
    assert finished.empty(), (
        f"the busy request ({iterations} iterations) finished before {QUICK_REQUESTS} quick ones; "
        f"calibration was {per_iteration * 1e6:.2f} µs per iteration"
    )
    assert max(quick_times) < QUICK_LIMIT_S, [round(t, 3) for t in quick_times]

    busy_finished, result, error = finished.get(timeout=120)
    assert error is None, error
    assert count(result) == [iterations]
    # Quick requests all returned while the busy one was still running.
    assert quick_done < busy_finished
    assert busy_finished - busy_started > 1.0


def test_two_instances_serve_two_requests_at_once(client, protocol, url):
    # busy_loop gets Triton's default of two CPU instances: while one
    # instance is busy with a long request, the other answers a short one.
    # With a single instance the short request would wait for the long one.
    iterations, _ = busy_iterations(client, BUSY_SECONDS)
    long_request = start_busy(protocol, url, iterations)
    time.sleep(0.3)
    wire = default_wire(client)
    result = wire.infer(client, "busy_loop", busy_loop_inputs(1000, wire))
    assert count(result) == [1000]
    assert long_request.empty(), "the long request finished before the short one was answered"
    _, result, error = long_request.get(timeout=120)
    assert error is None, error
    assert count(result) == [iterations]


# How each client gives up on a request: gRPC by its deadline, HTTP by its
# socket timeout; and what it then reports. gRPC's deadline runs out on both
# sides at once: the client's own timer says DEADLINE_EXCEEDED, while the
# server's (tonic's) timer, when it wins the race, answers CANCELLED
# "Timeout expired" (where gRPC's convention is DEADLINE_EXCEEDED).
IMPATIENT = {
    "grpc": ({}, {"client_timeout": 0.2}, InferenceServerException, ("Deadline Exceeded", "Timeout expired")),
    "http": ({"network_timeout": 0.2}, {}, TimeoutError, ("timed out",)),
}


def test_abandoned_request_leaves_the_model_usable(client, protocol, url):
    # The client gives up long before the model finishes; the server must
    # drop the answer quietly and keep serving the same model.
    client_options, call_options, error_type, texts = IMPATIENT[protocol]
    with connect(protocol, url, **client_options) as impatient:
        wire = default_wire(impatient)
        with pytest.raises(error_type) as caught:
            wire.infer(impatient, "busy_loop", busy_loop_inputs(1_000_000, wire), **call_options)
        assert any(text in str(caught.value) for text in texts), caught.value
    wire = default_wire(client)
    for iterations in (1, 1000):
        result = wire.infer(client, "busy_loop", busy_loop_inputs(iterations, wire))
        assert count(result) == [iterations]
    assert_simple_works(client)
