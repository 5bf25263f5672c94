"""Fixtures: one shared server for the whole session, serving gRPC and HTTP,
and a factory for extra servers with their own flags and model repositories.

Tests that take `client` (or `protocol`) run once per protocol; tests that
take `wire` run once per way of sending a request (see protocols.WIRES),
or over the wires given by `@pytest.mark.wires(...)`."""

import pytest

from protocols import PROTOCOLS, WIRES, connect
from server_process import SHARED_REPOSITORIES, ServerProcess, server_args, start_server


def pytest_generate_tests(metafunc):
    """Parametrizes `protocol` (and with it `client`) over both protocols,
    and `wire` over the wires, each wire with its own protocol."""
    if "wire" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("wires")
        wires = marker.args if marker else WIRES
        metafunc.parametrize(("protocol", "wire"), [(wire.protocol, wire) for wire in wires], ids=[w.id for w in wires])
    elif "protocol" in metafunc.fixturenames:
        metafunc.parametrize("protocol", PROTOCOLS)


@pytest.fixture(scope="session")
def server():
    """The server most tests talk to: every example and test model, loaded."""
    shared = start_server(server_args(*SHARED_REPOSITORIES, extra=["--exit-on-error=false"]))
    yield shared
    code = shared.stop()
    assert code == 0, f"the shared server exited with {code} after SIGTERM; output:\n{shared.log}"


@pytest.fixture(scope="session")
def grpc_url(server):
    return server.grpc_url


@pytest.fixture(scope="session")
def http_url(server):
    return server.http_url


@pytest.fixture
def url(server, protocol):
    """The shared server's address for the test's protocol."""
    return server.url_for(protocol)


@pytest.fixture
def client(url, protocol):
    """A tritonclient.grpc or tritonclient.http client of the shared server."""
    with connect(protocol, url) as triton:
        yield triton


@pytest.fixture
def grpc_client(grpc_url):
    """For what only gRPC has: streaming, typed contents."""
    with connect("grpc", grpc_url) as triton:
        yield triton


@pytest.fixture
def http_client(http_url):
    with connect("http", http_url) as triton:
        yield triton


@pytest.fixture
def launch_server():
    """Starts extra servers: `launch_server(*repositories, extra=[...],
    binary=None, wait="ready", env=None, http_port=0)`, where `wait` is
    "ready", "loaded" (loading finished, whatever its outcome), "listening"
    or "nothing", and `env` adds environment variables. Each one is stopped
    by PID when the test ends."""
    started = []

    def launch(*repositories, extra=(), binary=None, wait="ready", env=None, http_port=0):
        args = server_args(*repositories, extra=extra, http_port=http_port)
        if wait == "nothing":
            server = ServerProcess(args, binary, env)
            started.append(server)
            return server
        server = start_server(args, binary=binary, wait_ready=wait == "ready", env=env)
        started.append(server)
        if wait == "loaded":
            server.wait_models_loaded()
        return server

    yield launch
    failures = []
    for extra_server in started:
        try:
            extra_server.stop()
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n\n".join(failures)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attaches the end of the shared server's log to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    shared = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and shared is not None:
        report.sections.append(("tritonrs log (last 60 lines)", "\n".join(shared.lines[-60:])))
