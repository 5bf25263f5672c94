"""Model control mode `poll`, through tritonclient over gRPC and HTTP: the
server follows its repository, loading added models, reloading changed
ones without losing a request (and keeping the old versions when the new
contents do not load), serving added versions beside the unchanged ones
and unloading removed models; load and unload requests are refused, as
in Triton."""

import shutil
import threading

import pytest

from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from protocols import connect, count, expect_error, model_config, model_stats
from server_process import CHANGE_SEEN_S, EXAMPLE_MODELS, copy_model, wait_until

SIMPLE = EXAMPLE_MODELS / "simple"
def infer_simple(client, model):
    wire = default_wire(client)
    a, b = simple_data(2)
    check_simple_result(wire.infer(client, model, simple_inputs(a, b, wire)), a, b)


def config_text(name, max_batch_size):
    text = (SIMPLE / "config.pbtxt").read_text().replace('name: "simple"', f'name: "{name}"')
    return text.replace("max_batch_size: 8", f"max_batch_size: {max_batch_size}")


@pytest.fixture
def repository(tmp_path):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    return repository


@pytest.fixture
def polling_server(launch_server, repository):
    return launch_server(repository, extra=["--model-control-mode=poll", "--repository-poll-secs=1"])


def test_the_server_follows_the_repository(polling_server, repository, protocol):
    server = polling_server
    with server.client(protocol) as client:
        infer_simple(client, "simple")
        assert not client.is_model_ready("other")

        # Added: loads.
        copy_model(SIMPLE, repository, name="other", config=config_text("other", 8))
        wait_until(lambda: client.is_model_ready("other"), "the added model is ready")
        infer_simple(client, "other")

        # A version directory added: the default policy serves the latest.
        shutil.copytree(repository / "other" / "1", repository / "other" / "2")
        wait_until(lambda: client.is_model_ready("other", "2"), "version 2 is ready")
        assert not client.is_model_ready("other", "1")
        infer_simple(client, "other")

        # Removed: unloads, and the model is unknown again.
        shutil.rmtree(repository / "other")
        wait_until(lambda: not client.is_model_ready("other"), "the removed model is gone")
        wire = default_wire(client)
        a, b = simple_data()
        expect_error(client, lambda: wire.infer(client, "other", simple_inputs(a, b, wire)), "NOT_FOUND", "other")

        # Load and unload requests are refused, with Triton's words.
        for call in (lambda: client.load_model("simple"), lambda: client.unload_model("simple")):
            expect_error(client, call, "UNAVAILABLE", "not allowed if polling is enabled", "mode=poll")
    assert server.wait_for_line(r"loaded: its directory was added to the model repository model=other")
    assert server.wait_for_line(r"unloaded: its directory left the model repository model=other")


def test_a_changed_model_reloads_without_losing_requests(polling_server, repository, protocol):
    server = polling_server
    failures, answered = [], []
    stop = threading.Event()

    def keep_asking():
        # Bounded: stops when told, or after 2000 requests.
        with connect(protocol, server.url_for(protocol)) as client:
            for _ in range(2000):
                if stop.is_set():
                    return
                try:
                    infer_simple(client, "simple")
                    answered.append(1)
                except Exception as error:  # noqa: BLE001 (any failure is what the test counts)
                    failures.append(repr(error))

    with server.client(protocol) as client:
        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            (repository / "simple" / "config.pbtxt").write_text(config_text("simple", 4))
            wait_until(lambda: model_config(client, "simple")["max_batch_size"] == 4, "the new configuration serves")
            before = len(answered)
            wait_until(lambda: len(answered) > before + 5, "requests after the reload are answered")
        finally:
            stop.set()
            asker.join(60)
        assert failures == []

        # Contents that do not load: the versions loaded before keep serving.
        (repository / "simple" / "config.pbtxt").write_text('name: "simple"\nmax_batch_size: eight\n')
        kept = r'new contents do not load, so the versions loaded before keep serving.*model=simple'
        assert server.wait_for_line(kept, timeout=CHANGE_SEEN_S)
        assert model_config(client, "simple")["max_batch_size"] == 4
        infer_simple(client, "simple")

        # Fixed again: reloads.
        (repository / "simple" / "config.pbtxt").write_text(config_text("simple", 2))
        wait_until(lambda: model_config(client, "simple")["max_batch_size"] == 2, "the fixed configuration serves")
        infer_simple(client, "simple")


def test_an_added_version_leaves_the_others_as_they_were(polling_server, repository, protocol):
    """As in Triton, a version whose files and configuration did not change
    keeps serving through a reload, with its statistics."""
    server = polling_server
    with server.client(protocol) as client:
        config = repository / "simple" / "config.pbtxt"
        config.write_text(config_text("simple", 8) + "\nversion_policy: { all {} }\n")
        wait_until(lambda: "all" in model_config(client, "simple").get("version_policy", {}), "the new policy serves")
        for _ in range(3):
            infer_simple(client, "simple")
        assert count(model_stats(client, "simple", "1"), "inference_count") == 6

        shutil.copytree(repository / "simple" / "1", repository / "simple" / "2")
        wait_until(lambda: client.is_model_ready("simple", "2"), "version 2 is ready")
        assert server.wait_for_line(r"unchanged, so it keeps serving as loaded model=simple version=1")
        assert count(model_stats(client, "simple", "1"), "inference_count") == 6
        assert count(model_stats(client, "simple", "2"), "inference_count") == 0

        # The same configuration written again: nothing loads again.
        config.write_text(config.read_text())
        assert server.wait_for_line(r"unchanged, so it keeps serving as loaded model=simple version=2")
        assert count(model_stats(client, "simple", "1"), "inference_count") == 6
        infer_simple(client, "simple")
        assert count(model_stats(client, "simple", "2"), "inference_count") == 2


def test_no_polling_with_zero_seconds(launch_server, repository):
    server = launch_server(repository, extra=["--model-control-mode=poll", "--repository-poll-secs=0"])
    assert server.wait_for_line(r"^W.*--repository-poll-secs=0: the repository is not polled", timeout=5)
    with server.client("http") as client:
        infer_simple(client, "simple")
