"""Launch commands written for `tritonserver` work unchanged."""

import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from model_requests import assert_simple_works
from server_process import EXAMPLE_MODELS, REPO_ROOT, ServerProcess, binary_path, start_server


def test_binary_linked_as_tritonserver(launch_server, tmp_path):
    link = tmp_path / "bin" / "tritonserver"
    link.parent.mkdir()
    link.symlink_to(binary_path())
    server = launch_server(EXAMPLE_MODELS, binary=link)
    with server.client() as client:
        assert client.get_server_metadata().name == "triton"
        assert_simple_works(client)
    assert server.stop() == 0


def test_unknown_triton_flags_only_warn(launch_server):
    flags = ["--model-load-gpu-limit=0:0.5", "--pinned-memory-pool-byte-size=0", "--buffer-manager-thread-count", "4"]
    server = launch_server(EXAMPLE_MODELS, extra=flags)
    with server.client() as client:
        assert_simple_works(client)
    for shown in ["--model-load-gpu-limit=0:0.5", "--pinned-memory-pool-byte-size=0", "--buffer-manager-thread-count 4"]:
        assert server.wait_for_line(f"^W.*ignoring unsupported tritonserver flag {shown}", timeout=1)
    assert server.stop() == 0


def test_model_store_alias_and_server_id(launch_server):
    server = launch_server(extra=[f"--model-store={EXAMPLE_MODELS}", "--id=edge-server"])
    with server.client() as client:
        assert client.get_server_metadata().name == "edge-server"
        assert_simple_works(client)


def test_no_model_repository_anywhere_fails_naming_the_flag():
    # Without the flag the server looks in the cloud platforms' well-known
    # places; when none of them holds a repository it must say how to give one.
    for well_known in ("/opt/ds/model/deployed_model", "/mnt/models"):
        if Path(well_known).exists():
            pytest.skip(f"{well_known} exists on this machine")
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("MODEL_REPOSITORY", "AZUREML_MODEL_DIR", "AIP_STORAGE_URI")
    }
    finished = subprocess.run(
        [str(binary_path()), "--grpc-port=0"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        timeout=30,
    )
    assert finished.returncode == 1
    assert b"no model repository" in finished.stderr
    assert b"--model-repository" in finished.stderr


def test_unreadable_repository_exits_with_failure(launch_server, tmp_path):
    server = launch_server(tmp_path / "does-not-exist", wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert "does-not-exist" in server.log


def shared_port_args(http_port, grpc_port, reuse):
    """Flags for a server on given HTTP and gRPC ports (0: any free one)."""
    args = [f"--model-repository={EXAMPLE_MODELS}", "--grpc-address=127.0.0.1", "--http-address=127.0.0.1"]
    args += [f"--http-port={http_port}", f"--grpc-port={grpc_port}"]
    args += ["--metrics-address=127.0.0.1", "--metrics-port=0"]
    if reuse:
        args += ["--reuse-http-port=true", "--reuse-grpc-port"]
    return args


def successes(server):
    """simple's nv_inference_request_success on the server's own metrics port."""
    with urllib.request.urlopen(f"http://{server.metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    line = 'nv_inference_request_success{model="simple",version="1"} '
    return int(next(row for row in text.splitlines() if row.startswith(line)).split()[-1])


def test_reuse_port_lets_two_servers_share_their_ports():
    first = start_server(shared_port_args(0, 0, reuse=True))
    try:
        second_args = shared_port_args(first.ports["http"], first.ports["grpc"], reuse=True)
        # Asking the shared port whether it is ready may reach the first
        # server: the second one's own log says when it is.
        second = start_server(second_args, wait_ready=False)
        try:
            second.wait_for_line(r"server is ready")
            assert (second.ports["http"], second.ports["grpc"]) == (first.ports["http"], first.ports["grpc"])
            # Each new connection goes to one of the two: over 40 of them,
            # both get some (the chance that one gets none is 2^-39).
            for protocol in ("http", "grpc"):
                for _ in range(20):
                    with first.client(protocol) as client:
                        assert_simple_works(client)
            counts = successes(first), successes(second)
            assert sum(counts) >= 40 and min(counts) > 0, counts
        finally:
            assert second.stop() == 0
    finally:
        assert first.stop() == 0


def test_a_taken_port_stops_the_start_without_reuse_port():
    first = start_server(shared_port_args(0, 0, reuse=True))
    try:
        # The first server allows sharing; this one does not ask to.
        second = ServerProcess(shared_port_args(first.ports["http"], 0, reuse=False))
        assert second.wait_exit(timeout=30) != 0
        assert "cannot listen for HTTP" in second.log, second.log
    finally:
        assert first.stop() == 0
