"""Triton's logging extension through tritonclient over gRPC and HTTP: the
settings the flags give, changing them on a running server and seeing the
log follow, the changes that are refused, and --log-file."""

import re
import time

import pytest

from http_requests import expect_error_response, post
from protocols import expect_error, protocol_of
from server_process import EXAMPLE_MODELS

DEFAULTS = {
    "log_file": "",
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "default",
}


def as_dict(client, settings):
    """tritonclient.grpc answers with a LogSettingsResponse as JSON, each
    value under its type; tritonclient.http with the plain object."""
    if protocol_of(client) == "http":
        return settings
    return {key: next(iter(value.values())) for key, value in settings["settings"].items()}


def log_settings(client):
    kwargs = {"as_json": True} if protocol_of(client) == "grpc" else {}
    return as_dict(client, client.get_log_settings(**kwargs))


def update(client, **changes):
    kwargs = {"as_json": True} if protocol_of(client) == "grpc" else {}
    return as_dict(client, client.update_log_settings(changes, **kwargs))


@pytest.fixture
def server(launch_server):
    """Explicit model control, so a test can make the server log on demand
    by loading a model: 'created ONNX Runtime session' at debug level,
    'loaded on request' at info level."""
    return launch_server(EXAMPLE_MODELS, extra=["--model-control-mode=explicit", "--load-model=simple"])


def lines_about(server, model, message):
    return [line for line in server.lines if message in line and model in line]


def test_settings_follow_the_flags_and_change_the_log(server, protocol):
    with server.client(protocol) as client:
        assert log_settings(client) == DEFAULTS
        client.load_model("scale_fp16")
        assert server.wait_for_line(r"loaded on request.*scale_fp16")
        assert not lines_about(server, "scale_fp16", "created ONNX Runtime session")

        changed = update(client, log_verbose_level=1, log_info=False)
        assert changed == {**DEFAULTS, "log_verbose_level": 1, "log_info": False}
        assert log_settings(client) == changed
        client.load_model("simple_string")
        assert server.wait_for_line(r"DEBUG.*created ONNX Runtime session.*simple_string")
        # The info line comes after the debug ones; give it time to be absent.
        time.sleep(0.3)
        assert not lines_about(server, "simple_string", "loaded on request")

        assert update(client, log_verbose_level=0, log_info=True) == DEFAULTS


def test_refused_changes_say_why(server, protocol):
    with server.client(protocol) as client:
        expect_error(client, lambda: update(client, log_file="/tmp/elsewhere.log"), "UNIMPLEMENTED", "log file")
        expect_error(client, lambda: update(client, log_format="ISO8601"), "INVALID_ARGUMENT", "log_format")
        assert log_settings(client) == DEFAULTS


def test_the_http_route_checks_types(server):
    response = post(server.http_url, "/v2/logging", {"log_info": "yes"})
    expect_error_response(response, 400, "'log_info' must be true or false")
    response = post(server.http_url, "/v2/logging", {"log_verbosity": 1})
    expect_error_response(response, 400, "unknown log setting 'log_verbosity'")
    response = post(server.http_url, "/v2/logging", [])
    expect_error_response(response, 400, "JSON object")


def test_the_log_can_go_to_a_file(launch_server, tmp_path):
    log_file = tmp_path / "server.log"
    server = launch_server(EXAMPLE_MODELS, extra=[f"--log-file={log_file}"], wait="nothing")
    deadline = time.monotonic() + 30
    port = None
    while port is None and time.monotonic() < deadline:
        found = re.search(r"Started HTTPService at 127\.0\.0\.1:(\d+)", log_file.read_text() if log_file.exists() else "")
        port = found and found[1]
        time.sleep(0.1)
    assert port, f"no listening line in {log_file}"
    from protocols import connect

    with connect("http", f"127.0.0.1:{port}") as client:
        deadline = time.monotonic() + 30
        while not client.is_server_ready() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert log_settings(client)["log_file"] == str(log_file)
    assert server.stop() == 0
    assert "server stopped" in log_file.read_text()
    # Nothing went to standard error.
    assert server.log.strip() == ""
