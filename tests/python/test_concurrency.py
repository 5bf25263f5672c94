"""A long request on one model must not hold up requests to another."""

import queue
import time

from tritonclient.utils import InferenceServerException

from model_requests import (
    assert_simple_works,
    busy_loop_inputs,
    check_simple_result,
    collect_into,
    simple_data,
    simple_inputs,
)

CALIBRATION_ITERATIONS = 200_000
BUSY_SECONDS = 3.0
QUICK_REQUESTS = 20
QUICK_LIMIT_S = 0.5


def test_busy_model_does_not_delay_other_models(client):
    # The fastest of two runs: a first run can be slow while ONNX Runtime
    # warms up, which would make the busy request too short.
    timings = []
    for _ in range(2):
        started = time.monotonic()
        calibration = client.infer("busy_loop", busy_loop_inputs(CALIBRATION_ITERATIONS), client_timeout=60)
        timings.append(time.monotonic() - started)
        assert calibration.as_numpy("COUNT").tolist() == [CALIBRATION_ITERATIONS]
    per_iteration = min(timings) / CALIBRATION_ITERATIONS
    # Aim past BUSY_SECONDS, but stay bounded should calibration be noisy.
    iterations = min(int(BUSY_SECONDS / per_iteration), 50_000_000)

    finished = queue.Queue()
    busy_started = time.monotonic()
    client.async_infer(
        "busy_loop",
        busy_loop_inputs(iterations),
        callback=lambda result, error: finished.put((time.monotonic(), result, error)),
        client_timeout=120,
    )
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
    # busy_loop gets Triton's default of two CPU instances, so two requests
    # should take about as long as one, not twice as long.
    iterations = 600_000
    started = time.monotonic()
    client.infer("busy_loop", busy_loop_inputs(iterations), client_timeout=60)
    single = time.monotonic() - started
    finished = queue.Queue()
    started = time.monotonic()
    for _ in range(2):
        client.async_infer(
            "busy_loop",
            busy_loop_inputs(iterations),
            callback=collect_into(finished),
            client_timeout=60,
        )
    for _ in range(2):
        result, error = finished.get(timeout=60)
        assert error is None, error
        assert result.as_numpy("COUNT").tolist() == [iterations]
    both = time.monotonic() - started
    assert both < 1.6 * single, f"one request took {single:.2f} s, two concurrent ones {both:.2f} s"


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
