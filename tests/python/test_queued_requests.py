"""Requests queued behind a busy instance, as tritonclient sends them: the
`priority=` and `timeout=` of `infer` (tritonclient.grpc puts them into
uint64 and int64 request parameters, tritonclient.http into JSON numbers;
the Rust scheduling tests send int64 parameters only), and clients that
give up while their request waits.

Each test serves `batch_busy_loop` (run time chosen by the request) with
one instance, keeps it busy with a long request and watches what happens
to the requests queued behind it."""

import queue
import time

import pytest

from model_requests import batch_busy_loop_inputs, default_wire, in_background
from protocols import as_numpy, connect, count, expect_error, model_stats
from server_process import TEST_MODELS, copy_model

CONFIG = """
max_batch_size: 1
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching {
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { default_timeout_microseconds: 60000000 allow_timeout_override: true }
}
"""


@pytest.fixture
def queued(tmp_path, launch_server, protocol):
    """A server of `m` (batch_busy_loop with CONFIG) and its URL for the
    test's protocol."""
    copy_model(TEST_MODELS / "batch_busy_loop", tmp_path, "m", config=CONFIG)
    server = launch_server(tmp_path)
    return server.url_for(protocol)


@pytest.fixture
def queued_grpc(tmp_path, launch_server):
    """The same server, for the gRPC-only stream tests."""
    copy_model(TEST_MODELS / "batch_busy_loop", tmp_path, "m", config=CONFIG)
    return launch_server(tmp_path).url_for("grpc")


def busy(client, iterations, payload):
    return batch_busy_loop_inputs(iterations, [payload], default_wire(client))


def iterations_for(client, seconds):
    """Iterations that keep the model busy for about `seconds`."""
    probe = 200_000
    fastest = float("inf")
    for _ in range(2):
        started = time.monotonic()
        client.infer("m", busy(client, probe, 0.0))
        fastest = min(fastest, time.monotonic() - started)
    return int(seconds / fastest * probe)


def occupy(protocol, url, iterations):
    """Starts a long request and returns once it is surely running."""
    long = in_background(protocol, url, lambda c: c.infer("m", busy(c, iterations, -1.0)))
    time.sleep(0.2)
    return long


def echoed(result):
    return as_numpy(result, "PAYLOAD_OUT").tolist()


def test_a_priority_one_request_overtakes_the_default_level(protocol, queued):
    with connect(protocol, queued) as client:
        each = iterations_for(client, 0.15)
    long = occupy(protocol, queued, each * 6)
    # Sent in this order, 50 ms apart; the last asks for priority level 1.
    waiting = []
    for payload, priority in ((1.0, 0), (2.0, 0), (3.0, 1)):
        waiting.append(
            in_background(protocol, queued, lambda c, p=payload, q=priority: c.infer("m", busy(c, each, p), priority=q))
        )
        time.sleep(0.05)
    _, _, error = long.get(timeout=60)
    assert error is None, error
    finished = {}
    for payload, answer in zip((1.0, 2.0, 3.0), waiting):
        at, result, error = answer.get(timeout=60)
        assert error is None, error
        assert echoed(result) == [[payload]]
        finished[payload] = at
    assert finished[3.0] < finished[1.0] < finished[2.0], finished


def test_a_request_timeout_rejects_it_while_it_waits_and_later_requests_run(protocol, queued):
    with connect(protocol, queued) as client:
        iterations = iterations_for(client, 1.0)
        long = occupy(protocol, queued, iterations)
        started = time.monotonic()
        message = expect_error(
            client,
            lambda: client.infer("m", busy(client, 1, 5.0), timeout=100_000),
            "UNAVAILABLE",
            "Request timeout expired",
        )
        # Rejected when its 100 ms ran out, not when the instance came free.
        assert time.monotonic() - started < 0.8, message
        _, _, error = long.get(timeout=60)
        assert error is None, error
        assert echoed(client.infer("m", busy(client, 1, 6.0))) == [[6.0]]


# How a client gives up on a request after 200 ms: tritonclient.grpc by the
# call's deadline, tritonclient.http by closing its connection when the
# socket times out.
IMPATIENT = {"grpc": ({}, {"client_timeout": 0.2}), "http": ({"network_timeout": 0.2}, {})}


def test_a_request_whose_client_gave_up_while_it_waited_never_runs(protocol, queued):
    client_options, call_options = IMPATIENT[protocol]
    with connect(protocol, queued) as client:
        iterations = iterations_for(client, 1.0)
        before = count(model_stats(client, "m"), "inference_count")
        long = occupy(protocol, queued, iterations)
        with connect(protocol, queued, **client_options) as impatient:
            with pytest.raises(Exception, match="(?i)deadline|timed? ?out"):
                impatient.infer("m", busy(impatient, 1, 9.0), **call_options)
        _, _, error = long.get(timeout=60)
        assert error is None, error
        assert count(model_stats(client, "m"), "inference_count") - before == 1, "the abandoned request ran"
        assert echoed(client.infer("m", busy(client, 1, 4.0))) == [[4.0]]
        assert count(model_stats(client, "m"), "inference_count") - before == 2


def test_requests_queued_on_a_cancelled_stream_never_run(queued_grpc):
    # tritonclient's stop_stream(cancel_requests=True) cancels the call;
    # as in Triton, the stream's requests still waiting leave the queue.
    with connect("grpc", queued_grpc) as client:
        iterations = iterations_for(client, 1.0)
        before = count(model_stats(client, "m"), "inference_count")
        answers = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=60)
        client.async_stream_infer("m", busy(client, iterations, -1.0))
        for payload in (1.0, 2.0):
            client.async_stream_infer("m", busy(client, 1, payload))
        time.sleep(0.3)
        client.stop_stream(cancel_requests=True)
        # The long request was running and finishes (it may take longer than
        # calibrated on a busy machine); a queued one would run right after.
        deadline = time.monotonic() + 30
        while count(model_stats(client, "m"), "inference_count") == before and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        stats = model_stats(client, "m")
        assert count(stats, "inference_count") - before == 1, "a request of the cancelled stream ran"
        assert echoed(client.infer("m", busy(client, 1, 4.0))) == [[4.0]]
