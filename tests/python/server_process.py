"""Starting and stopping the real `tritonrs` binary for the tests.

Every server listens on 127.0.0.1 with ephemeral ports (`--grpc-port=0`,
`--http-port=0`, `--metrics-port=0`); the ports are read from the log lines
the server prints once it listens.
"""

import contextlib
import ctypes
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = REPO_ROOT / "examples" / "model_repository"
TEST_MODELS = REPO_ROOT / "tests" / "model_repository"
# The shared server's repositories: relative to the repository root, where
# every server runs, as a launch command in this checkout would spell them.
SHARED_REPOSITORIES = ("examples/model_repository", "tests/model_repository")



def stand_in_driver(folder, example, soname):
    """`folder`, holding the cargo example library `example` (a stand-in for
    one of NVIDIA's driver libraries, built into target/debug/examples) under
    the driver's name `soname`, for a server's LD_LIBRARY_PATH."""
    built = REPO_ROOT / "target" / "debug" / "examples" / f"lib{example}.so"
    assert built.is_file(), f"build it first: cargo build --example {example} ({built} is missing)"
    (folder / soname).symlink_to(built)
    return folder


START_TIMEOUT_S = 30
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The line each endpoint prints once it listens, by protocol.
LISTENING = {
    "grpc": r"Started GRPCInferenceService at 127\.0\.0\.1:(\d+)",
    "http": r"Started HTTPService at 127\.0\.0\.1:(\d+)",
    "metrics": r"Started Metrics Service at 127\.0\.0\.1:(\d+)",
}


# Looked up once here: between fork and exec the child should do as little
# as possible (no dynamic loading while other threads may hold its locks).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Runs in the child before exec: if the test process is killed outright
    (no fixture teardown), the kernel sends the server SIGTERM."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def binary_path() -> pathlib.Path:
    """The server binary: `TRITONRS_BIN`, or the debug build of this checkout."""
    path = pathlib.Path(os.environ.get("TRITONRS_BIN", "target/debug/tritonrs"))
    return path if path.is_absolute() else REPO_ROOT / path


def server_args(*repositories, extra=(), http_port=0):
    """Flags for a server on local ephemeral gRPC, HTTP and metrics ports
    with the given repositories. `http_port=None` leaves out --http-port, so
    that TRITONRS_HTTP_PORT can choose it."""
    args = [f"--model-repository={repository}" for repository in repositories]
    args += ["--grpc-address=127.0.0.1", "--grpc-port=0", "--http-address=127.0.0.1"]
    args += ["--metrics-address=127.0.0.1", "--metrics-port=0"]
    if http_port is not None:
        args.append(f"--http-port={http_port}")
    return args + list(extra)


def _endpoints(args):
    """The endpoints a server started with `args` serves (turned off as
    these tests spell it: --allow-grpc=false, --allow-http=false,
    --allow-metrics=false)."""
    disabled = {
        endpoint
        for endpoint in LISTENING
        if any(arg in args for arg in (f"--allow-{endpoint}=false", f"--allow-{endpoint}=0"))
    }
    return [endpoint for endpoint in LISTENING if endpoint not in disabled]


class ServerProcess:
    """One running server. Its combined output is drained into `lines` by a
    background thread, so the pipe never fills and tests can wait for lines."""

    def __init__(self, args, binary=None, env=None):
        self.binary = pathlib.Path(binary or binary_path())
        if not self.binary.is_file():
            raise FileNotFoundError(f"{self.binary} does not exist; run `cargo build` or set TRITONRS_BIN")
        self.endpoints = _endpoints(args)
        environment = dict(os.environ, NO_COLOR="1")
        # A RUST_LOG from the caller could hide the lines that give the ports,
        # and TRITONRS_* settings from the caller would change the server.
        for name in list(environment):
            if name == "RUST_LOG" or (name.startswith("TRITONRS_") and name != "TRITONRS_BIN"):
                del environment[name]
        environment.update(env or {})
        self.process = subprocess.Popen(
            [str(self.binary), *args],
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.process.pid
        self.lines = []
        self._changed = threading.Condition()
        self._output_closed = False
        self._reader = threading.Thread(target=self._drain, name=f"tritonrs-{self.pid}-output", daemon=True)
        self._reader.start()
        self.ports = {}

    def _drain(self):
        for raw in iter(self.process.stdout.readline, b""):
            line = _ANSI_ESCAPE.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._output_closed = True
            self._changed.notify_all()

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def url_for(self, protocol) -> str:
        """host:port of the endpoint for "grpc", "http" or "metrics"."""
        assert protocol in self.ports, f"the server has not reported a {protocol} port"
        return f"127.0.0.1:{self.ports[protocol]}"

    @property
    def grpc_url(self) -> str:
        return self.url_for("grpc")

    @property
    def http_url(self) -> str:
        return self.url_for("http")

    @property
    def metrics_url(self) -> str:
        return self.url_for("metrics")

    def wait_for_line(self, pattern, timeout=START_TIMEOUT_S):
        """The first match of `pattern` in the output; fails if the output
        ends or `timeout` passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._changed:
            while True:
                for line in self.lines[checked:]:
                    match = regex.search(line)
                    if match:
                        return match
                checked = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._output_closed or remaining <= 0:
                    raise AssertionError(
                        f"server {self.pid} printed no line matching {pattern!r} "
                        f"({'its output ended' if self._output_closed else f'within {timeout} s'}); "
                        f"exit code {self.process.poll()}; output:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(min(remaining, 0.5))

    def wait_listening(self):
        for protocol in self.endpoints:
            self.ports[protocol] = int(self.wait_for_line(LISTENING[protocol]).group(1))
        return self

    def client(self, protocol="grpc"):
        """A tritonclient client of this server for "grpc" or "http"."""
        # Imported here, not at the top: scripts/gpu-check.py starts servers
        # with this module on GPU machines that have no tritonclient.
        from protocols import connect

        return connect(protocol, self.url_for(protocol))

    def _answers_ready(self):
        if "grpc" in self.endpoints:
            with self.client() as client:
                return client.is_server_ready(client_timeout=2)
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except urllib.error.HTTPError:
            return False

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Polls the server's readiness (over gRPC when it serves gRPC)
        until it answers true."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._answers_ready():
                    return self
            except Exception:
                # The listener may not accept yet; keep polling.
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"server {self.pid} did not become ready within {timeout} s "
                    f"(exit code {self.process.poll()}); output:\n{self.log}"
                )
            time.sleep(0.1)

    def wait_models_loaded(self, timeout=START_TIMEOUT_S):
        """Waits for the end of loading, whether or not every model loaded."""
        self.wait_for_line(r"server is ready|server is serving, but not ready", timeout)
        return self

    def wait_exit(self, timeout):
        """The exit code of a server expected to stop by itself, once its
        last output has been read (the process may end before the reader
        thread has drained the pipe)."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server {self.pid} still runs after {timeout} s; output:\n{self.log}") from None
        self._reader.join(timeout)
        return code

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM, then the exit code; SIGKILL (and a failure) if it hangs."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout)
                self._reader.join(timeout)
                message = f"server {self.pid} ignored SIGTERM for {timeout} s; output:\n{self.log}"
                raise AssertionError(message) from None
        self._reader.join(timeout)
        return self.process.returncode


def start_server(args, binary=None, wait_ready=True, env=None):
    """Starts a server and waits for its ports (and readiness, by default)."""
    server = ServerProcess(args, binary, env)
    try:
        server.wait_listening()
        if wait_ready:
            server.wait_ready()
    except BaseException:
        # The original failure matters more than a second one while stopping.
        with contextlib.suppress(AssertionError):
            server.stop()
        raise
    return server


# A change of a polled repository is seen within one poll (1 s in the
# tests) and a load of the example models takes well under a second; the
# rest is room for a busy machine.
CHANGE_SEEN_S = 20


def wait_until(condition, what, timeout=CHANGE_SEEN_S):
    """Polls `condition` until it holds; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"after {timeout} s: {what}"
        time.sleep(0.1)


def copy_model(source, repository, name=None, versions=(1,), config=None):
    """Copies model directory `source` into `repository` as `name`, with the
    given version directories (each a copy of the source's version 1) and,
    when `config` is given, that text as its config.pbtxt."""
    source = pathlib.Path(source)
    target = pathlib.Path(repository) / (name or source.name)
    target.mkdir(parents=True)
    for version in versions:
        shutil.copytree(source / "1", target / str(version))
    if config is not None:
        (target / "config.pbtxt").write_text(config)
    elif (source / "config.pbtxt").is_file():
        shutil.copy(source / "config.pbtxt", target / "config.pbtxt")
    return target
