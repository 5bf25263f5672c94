"""Launch commands written for `tritonserver` work unchanged."""

import subprocess

from model_requests import assert_simple_works
from server_process import EXAMPLE_MODELS, REPO_ROOT, binary_path


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
    flags = ["--model-control-mode=none", "--pinned-memory-pool-byte-size=0", "--log-format", "default"]
    server = launch_server(EXAMPLE_MODELS, extra=flags)
    with server.client() as client:
        assert_simple_works(client)
    for shown in ["--model-control-mode=none", "--pinned-memory-pool-byte-size=0", "--log-format default"]:
        assert server.wait_for_line(f"WARN.*ignoring unsupported tritonserver flag {shown}", timeout=1)
    assert server.stop() == 0


def test_model_store_alias_and_server_id(launch_server):
    server = launch_server(extra=[f"--model-store={EXAMPLE_MODELS}", "--id=edge-server"])
    with server.client() as client:
        assert client.get_server_metadata().name == "edge-server"
        assert_simple_works(client)


def test_missing_model_repository_flag_is_a_usage_error():
    finished = subprocess.run(
        [str(binary_path()), "--grpc-port=0"],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=30,
    )
    assert finished.returncode == 2
    assert b"--model-repository" in finished.stderr


def test_unreadable_repository_exits_with_failure(launch_server, tmp_path):
    server = launch_server(tmp_path / "does-not-exist", wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert "does-not-exist" in server.log
