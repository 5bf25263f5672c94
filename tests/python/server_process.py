"""Starting and stopping the real `tritonrs` binary for the tests.

Every server listens on 127.0.0.1 with an ephemeral port (`--grpc-port=0`);
the port is read from the log line the server prints once it listens.
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

import tritonclient.grpc as grpcclient

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_MODELS = REPO_ROOT / "examples" / "model_repository"
TEST_MODELS = REPO_ROOT / "tests" / "model_repository"

START_TIMEOUT_S = 30
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LISTENING = re.compile(r"Started GRPCInferenceService at 127\.0\.0\.1:(\d+)")


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


def server_args(*repositories, extra=()):
    """Flags for a server on a local ephemeral port with the given repositories."""
    args = [f"--model-repository={repository}" for repository in repositories]
    args += ["--grpc-address=127.0.0.1", "--grpc-port=0", "--allow-http=false"]
    return args + list(extra)


class ServerProcess:
    """One running server. Its combined output is drained into `lines` by a
    background thread, so the pipe never fills and tests can wait for lines."""

    def __init__(self, args, binary=None):
        self.binary = pathlib.Path(binary or binary_path())
        if not self.binary.is_file():
            raise FileNotFoundError(f"{self.binary} does not exist; run `cargo build` or set TRITONRS_BIN")
        env = dict(os.environ, NO_COLOR="1")
        # A RUST_LOG from the caller could hide the line that gives the port.
        env.pop("RUST_LOG", None)
        self.process = subprocess.Popen(
            [str(self.binary), *args],
            cwd=REPO_ROOT,
            env=env,
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
        self.port = None

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

    @property
    def url(self) -> str:
        assert self.port is not None, "the server has not reported its port"
        return f"127.0.0.1:{self.port}"

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
        self.port = int(self.wait_for_line(_LISTENING.pattern).group(1))
        return self

    def client(self):
        return grpcclient.InferenceServerClient(url=self.url)

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        """Polls ServerReady until it answers true."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                try:
                    if client.is_server_ready(client_timeout=2):
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
        """The exit code of a server expected to stop by itself."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server {self.pid} still runs after {timeout} s; output:\n{self.log}") from None

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


def start_server(args, binary=None, wait_ready=True):
    """Starts a server and waits for its port (and readiness, by default)."""
    server = ServerProcess(args, binary)
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
