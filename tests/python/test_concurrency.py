"""A long request on one model must not hold up requests to another."""

import queue
import time

from tritonclient.utils import InferenceServerException

from model_requests import (
    assert_simple_works,
    busy_loop_inputs,
    check_simple_result,
    simple_data,
    simple_inputs,
)

CALIBRATION_ITERATIONS = 200_000
BUSY_SECONDS = 3.0
QUICK_REQUESTS = 20
QUICK_LIMIT_S = 0.5


def busy_iterations(client, seconds):
    """busy_loop iterations that take about `seconds` on this machine, and
    the measured time per iteration."""
    # The fastest of two runs: a first run can be slow while ONNX Runtime
    # warms up, which would make the busy request too short.
    timings = []
    for _ in range(2):
        started = time.monotonic()
        calibration = client.infer("busy_loop", busy_loop_inputs(CALIBRATION_ITERATIONS), client_timeout=60)
        timings.append(time.monotonic() - started)
        assert calibration.as_numpy("COUNT").tolist() == [CALIBRATION_ITERATIONS]
    per_iteration = min(timings) / CALIBRATION_ITERATIONS
    # Aim past `seconds`, but stay bounded should calibration be noisy.
    return min(int(seconds / per_iteration), 50_000_000), per_iteration


def start_busy(client, iterations):
    """Sends a busy_loop request without waiting; the queue receives
    (finish time, result, error)."""
    finished = queue.Queue()
    client.async_infer(
        "busy_loop",
        busy_loop_inputs(iterations),
        callback=lambda result, error: finished.put((time.monotonic(), result, error)),
        client_timeout=120,
    )
    return finished


def test_busy_model_does_not_delay_other_models(client):
    iterations, per_iteration = busy_iterations(client, BUSY_SECONDS)
    busy_started = time.monotonic()
    finished = start_busy(client, iterations)
    quick_times = []
    for n in range(QUICK_REQUESTS):
        a, b = simple_data(1 + n % 8, seed=500 + n)
        begin = time.monotonic()
        result = client.infer("simple", simple_inputs(a, b), client_timeout=30)
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
    assert result.as_numpy("COUNT").tolist() == [iterations]
    # Quick requests all returned while the busy one was still running.
    assert quick_done < busy_finished
    assert busy_finished - busy_started > 1.0


def test_two_instances_serve_two_requests_at_once(client):
    # busy_loop gets Triton's default of two CPU instances: while one
    # instance is busy with a long request, the other answers a short one.
    # With a single instance the short request would wait for the long one.
    iterations, _ = busy_iterations(client, BUSY_SECONDS)
    long_request = start_busy(client, iterations)
    time.sleep(0.3)
    result = client.infer("busy_loop", busy_loop_inputs(1000), client_timeout=60)
    assert result.as_numpy("COUNT").tolist() == [1000]
    assert long_request.empty(), "the long request finished before the short one was answered"
    _, result, error = long_request.get(timeout=120)
    assert error is None, error
    assert result.as_numpy("COUNT").tolist() == [iterations]


def test_abandoned_request_leaves_the_model_usable(client):
    # The client gives up long before the model finishes; the server must
    # drop the answer quietly and keep serving the same model.
    try:
        client.infer("busy_loop", busy_loop_inputs(2_000_000), client_timeout=0.2)
    except InferenceServerException as error:
        assert "Deadline Exceeded" in str(error)
    else:
        raise AssertionError("a ~2 s request finished within a 0.2 s deadline")
    for iterations in (1, 1000):
        result = client.infer("busy_loop", busy_loop_inputs(iterations), client_timeout=30)
        assert result.as_numpy("COUNT").tolist() == [iterations]
    assert_simple_works(client)
