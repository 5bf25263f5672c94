"""Fixtures: one shared server for the whole session, and a factory for
extra servers with their own flags and model repositories."""

import pytest
import tritonclient.grpc as grpcclient

from server_process import ServerProcess, server_args, start_server

# Relative to the repository root, where every server runs, as a launch
# command in this checkout would spell them.
SHARED_REPOSITORIES = ("examples/model_repository", "tests/model_repository")


@pytest.fixture(scope="session")
def server():
    """The server most tests talk to: every example and test model, loaded."""
    shared = start_server(server_args(*SHARED_REPOSITORIES, extra=["--exit-on-error=false"]))
    yield shared
    code = shared.stop()
    assert code == 0, f"the shared server exited with {code} after SIGTERM; output:\n{shared.log}"


@pytest.fixture(scope="session")
def url(server):
    return server.url


@pytest.fixture
def client(url):
    with grpcclient.InferenceServerClient(url=url) as triton:
        yield triton


@pytest.fixture
def launch_server():
    """Starts extra servers: `launch_server(*repositories, extra=[...],
    binary=None, wait="ready")`, where `wait` is "ready", "loaded" (loading
    finished, whatever its outcome), "listening" or "nothing". Each one is
    stopped by PID when the test ends."""
    started = []

    def launch(*repositories, extra=(), binary=None, wait="ready"):
        args = server_args(*repositories, extra=extra)
        if wait == "nothing":
            server = ServerProcess(args, binary)
            started.append(server)
            return server
        server = start_server(args, binary=binary, wait_ready=wait == "ready")
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
