"""SIGTERM stops the server in order: requests already running are
answered (over gRPC and HTTP), idle connections and streams do not hold it
up, and --exit-timeout-secs bounds the wait."""

import http.client
import os
import queue
import re
import signal
import socket
import time

import pytest

from http_requests import http_request
from model_requests import RPC_TIMEOUT_S, busy_loop_inputs, collect_into, default_wire, in_background
from protocols import as_numpy
from server_process import TEST_MODELS, copy_model

# About a second of work on the machines this runs on (see test_concurrency).
BUSY_ITERATIONS = 1_000_000


@pytest.fixture
def busy_repository(tmp_path):
    repository = tmp_path / "models"
    copy_model(TEST_MODELS / "busy_loop", repository)
    return repository


def cpu_seconds(server):
    """The CPU time the server process has used so far."""
    with open(f"/proc/{server.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_running(server, since):
    """Waits (bounded) until the server has computed for 0.15 s of CPU
    since `since` (its CPU time before the requests were sent): the busy
    model runs, so SIGTERM arrives while a request is in flight rather
    than before it was read, however slowly the client thread started."""
    deadline = time.monotonic() + 20
    while cpu_seconds(server) - since < 0.15:
        assert server.process.poll() is None, server.log
        assert time.monotonic() < deadline, "the busy request did not start running within 20 s"
        time.sleep(0.02)


def wait_until_received(server, count, instances):
    """Waits (bounded) until busy_loop has taken `count` requests: those
    answered, those queued, and, while any is queued, one running on each
    of its `instances`."""

    def metric(text, name):
        found = re.search(rf'^{name}{{model="busy_loop",version="1"}} (\d+)$', text, re.M)
        return int(found.group(1)) if found else 0

    deadline = time.monotonic() + 20
    while True:
        text = http_request(server.metrics_url, "GET", "/metrics").body.decode()
        queued = metric(text, "nv_inference_pending_request_count")
        answered = metric(text, "nv_inference_request_success")
        if queued > 0 and answered + queued + instances >= count:
            return
        assert time.monotonic() < deadline, f"busy_loop did not take {count} requests within 20 s"
        time.sleep(0.02)


def test_in_flight_request_is_answered_before_exit(launch_server, busy_repository, protocol):
    server = launch_server(busy_repository)

    def busy(client):
        wire = default_wire(client)
        return wire.infer(client, "busy_loop", busy_loop_inputs(BUSY_ITERATIONS, wire), client_timeout=60)

    since = cpu_seconds(server)
    answers = in_background(protocol, server.url_for(protocol), busy)
    wait_until_running(server, since)
    assert server.stop(timeout=30) == 0
    _, result, error = answers.get(timeout=RPC_TIMEOUT_S)
    assert error is None, error
    assert as_numpy(result, "COUNT").tolist() == [BUSY_ITERATIONS]
    assert "received SIGTERM" in server.log


def test_idle_http_connection_does_not_delay_exit(launch_server, busy_repository):
    server = launch_server(busy_repository)
    host, port = server.http_url.rsplit(":", 1)
    # A keep-alive connection that has been used once and then sits idle.
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/v2/health/ready")
        response = connection.getresponse()
        response.read()
        assert response.status == 200 and not response.will_close
        started = time.monotonic()
        assert server.stop(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        connection.close()


def test_in_flight_stream_request_is_answered_before_exit(launch_server, busy_repository):
    server = launch_server(busy_repository)
    answers = queue.Queue()
    with server.client() as client:
        client.start_stream(callback=collect_into(answers), stream_timeout=60)
        try:
            since = cpu_seconds(server)
            client.async_stream_infer("busy_loop", busy_loop_inputs(BUSY_ITERATIONS), request_id="last")
            wait_until_running(server, since)
            assert server.stop(timeout=30) == 0
            result, error = answers.get(timeout=RPC_TIMEOUT_S)
        finally:
            client.stop_stream()
    assert error is None, error
    assert result.get_response().id == "last"
    assert result.as_numpy("COUNT").tolist() == [BUSY_ITERATIONS]


def test_idle_stream_does_not_delay_exit(launch_server, busy_repository):
    server = launch_server(busy_repository)
    answers = queue.Queue()
    with server.client() as client:
        client.start_stream(callback=collect_into(answers), stream_timeout=60)
        try:
            client.async_stream_infer("busy_loop", busy_loop_inputs(10), request_id="quick")
            result, error = answers.get(timeout=RPC_TIMEOUT_S)
            assert error is None and result.as_numpy("COUNT").tolist() == [10]
            started = time.monotonic()
            assert server.stop(timeout=10) == 0
            assert time.monotonic() - started < 5
        finally:
            client.stop_stream()


def test_exit_timeout_bounds_the_wait(launch_server, busy_repository):
    server = launch_server(busy_repository, extra=["--exit-timeout-secs=1"])
    with server.client() as client:
        # Far longer than the exit timeout; its answer is abandoned.
        since = cpu_seconds(server)
        client.async_infer(
            "busy_loop", busy_loop_inputs(50 * BUSY_ITERATIONS), callback=lambda result, error: None, client_timeout=60
        )
        wait_until_running(server, since)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        server.wait_exit(timeout=15)
        assert time.monotonic() - started < 10
    assert server.wait_for_line("still in flight after 1 s", timeout=1)


def connection_refused(url):
    """Whether a new TCP connection to `url` is refused."""
    host, port = url.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_under_load_answers_every_request_and_refuses_new_connections(launch_server, busy_repository):
    # Twelve requests over both protocols against two instances: two run,
    # ten wait in the queue when SIGTERM arrives. Every one must be answered
    # correctly, while new connections are refused at once, as a rolling
    # update or scale-in needs.
    server = launch_server(busy_repository)
    iterations = BUSY_ITERATIONS // 4

    def busy(client):
        wire = default_wire(client)
        return wire.infer(client, "busy_loop", busy_loop_inputs(iterations, wire), client_timeout=120)

    answers = [in_background(protocol, server.url_for(protocol), busy) for protocol in ("grpc", "http") * 6]
    wait_until_received(server, 12, instances=2)
    os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 2
    while not (connection_refused(server.http_url) and connection_refused(server.grpc_url)):
        assert time.monotonic() < deadline, "new connections were still accepted 2 s after SIGTERM"
        time.sleep(0.02)
    failures = []
    for finished in answers:
        _, result, error = finished.get(timeout=120)
        if error is not None:
            failures.append(repr(error))
        elif as_numpy(result, "COUNT").tolist() != [iterations]:
            failures.append(f"wrong answer {as_numpy(result, 'COUNT')}")
    assert failures == [], failures
    assert server.wait_exit(timeout=60) == 0
