"""Triton's logging extension through tritonclient over gRPC and HTTP: the
settings the flags give, changing them on a running server and seeing the
log follow, the changes that are refused, and --log-file; and the log
records themselves, in Triton's two formats, escaped as Triton escapes
them, information on standard output and warnings on standard error."""

import os
import re
import signal
import subprocess
import time

import pytest

from http_requests import expect_error_response, post
from protocols import expect_error, protocol_of
from server_process import EXAMPLE_MODELS, REPO_ROOT, binary_path, server_args

# The record formats as Triton's own log tests (qa/L0_logging) read them.
DEFAULT_RECORD = re.compile(r"^(?P<level>[EWI])\d{4} \d{2}:\d{2}:\d{2}\.\d{6} (?P<pid>\d+) (?P<file>[\w.]+):\d+\] (?P<message>.*)$")
ISO8601_RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z (?P<level>[EWI]) (?P<pid>\d+) (?P<file>[\w.]+):\d+\] (?P<message>.*)$"
)
# The lines of the model table follow their record's first line.
TABLE_LINE = re.compile(r"^[+|]")

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
        # Verbose messages are information to Triton: level letter I.
        assert server.wait_for_line(r"^I.*created ONNX Runtime session.*simple_string")
        # The info line comes after the debug ones; give it time to be absent.
        time.sleep(0.3)
        assert not lines_about(server, "simple_string", "loaded on request")

        assert update(client, log_verbose_level=0, log_info=True) == DEFAULTS


def test_refused_changes_say_why(server, protocol):
    with server.client(protocol) as client:
        expect_error(client, lambda: update(client, log_file="/tmp/elsewhere.log"), "UNIMPLEMENTED", "log file")
        expect_error(client, lambda: update(client, log_format="json"), "INVALID_ARGUMENT", "log_format", "ISO8601")
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
    # Nothing went to standard output or standard error.
    assert server.log.strip() == ""


def records(lines):
    """The record lines of a log, without the table lines that follow one."""
    return [line for line in lines if line and not TABLE_LINE.match(line)]


def test_records_follow_the_format_set_at_start_and_through_the_extension(launch_server, protocol):
    server = launch_server(EXAMPLE_MODELS, extra=["--log-format=ISO8601", "--model-control-mode=explicit"])
    with server.client(protocol) as client:
        assert log_settings(client)["log_format"] == "ISO8601"
        started = records(server.lines)
        assert started and all(ISO8601_RECORD.match(line) for line in started), started
        assert {int(ISO8601_RECORD.match(line)["pid"]) for line in started} == {server.pid}
        assert server.wait_for_line(r'Z I \d+ server\.rs:\d+\] "Started HTTPService at 127\.0\.0\.1:\d+"$')

        assert update(client, log_format="default")["log_format"] == "default"
        before = len(server.lines)
        client.load_model("simple")
        server.wait_for_line(r"loaded on request")
        after = records(server.lines[before:])
        assert after and all(DEFAULT_RECORD.match(line) for line in after), after
        assert log_settings(client)["log_format"] == "default"


def test_messages_are_json_strings_so_that_none_can_forge_a_record(launch_server):
    forged = 'x\nI0101 00:00:00.000000 1 fake.cc:1] "INJECTED"'
    server = launch_server(
        EXAMPLE_MODELS, extra=["--model-control-mode=explicit", f"--load-model={forged}"], wait="nothing"
    )
    assert server.wait_exit(30) == 1
    failure = server.wait_for_line(r"failed to load: no model repository has a model of that name")
    record = DEFAULT_RECORD.match(failure.string)
    assert record["level"] == "E"
    assert record["message"] == (
        r'"failed to load: no model repository has a model of that name model=x\nI0101 00:00:00.000000 1 '
        r'fake.cc:1] \"INJECTED\""'
    )
    assert not any(line.startswith("I0101") for line in server.lines)


def test_escaping_can_be_turned_off_as_in_triton(launch_server):
    server = launch_server(EXAMPLE_MODELS, env={"TRITON_SERVER_ESCAPE_LOG_MESSAGES": "0"})
    line = server.wait_for_line(r"Started HTTPService at")
    assert DEFAULT_RECORD.match(line.string)["message"].startswith("Started HTTPService at 127.0.0.1:")


def test_information_goes_to_stdout_and_warnings_to_stderr(tmp_path):
    # Run by hand: the launcher merges the two streams.
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    args = server_args(EXAMPLE_MODELS, extra=["--not-a-triton-flag"])
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen([str(binary_path()), *args], cwd=REPO_ROOT, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while "server is ready" not in out.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, err.read_text()
            time.sleep(0.1)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    information, warnings = records(out.read_text().splitlines()), records(err.read_text().splitlines())
    assert {DEFAULT_RECORD.match(line)["level"] for line in information} == {"I"}, information
    assert {DEFAULT_RECORD.match(line)["level"] for line in warnings} == {"W"}, warnings
    assert any("ignoring unsupported tritonserver flag --not-a-triton-flag" in line for line in warnings)
    assert any("server stopped" in line for line in information)
