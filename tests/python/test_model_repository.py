"""Triton's model repository extension and model control modes, through
tritonclient over gRPC and HTTP: the index, explicit loads (with a JSON
configuration), reloads that lose no request, unloads, and mode `none`
refusing both. Each test but the last starts its own server on a
temporary repository."""

import json
import threading
import time

import pytest

from http_requests import expect_error_response, post
from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from protocols import expect_error, model_config, protocol_of
from server_process import EXAMPLE_MODELS, copy_model

SIMPLE = EXAMPLE_MODELS / "simple"
NOT_ALLOWED = "explicit model load / unload is not allowed"


def index_rows(client):
    """The repository index as a list of dicts with every field (absent
    ones empty), over either protocol."""
    if protocol_of(client) == "grpc":
        rows = client.get_model_repository_index(as_json=True).get("models", [])
    else:
        rows = client.get_model_repository_index()
    fields = ("name", "version", "state", "reason")
    return [{field: row.get(field, "") for field in fields} for row in rows]


def index_of(client, name):
    return [row for row in index_rows(client) if row["name"] == name]


def infer_simple(client, model="simple", batch=2, seed=0):
    wire = default_wire(client)
    a, b = simple_data(batch, seed=seed)
    result = wire.infer(client, model, simple_inputs(a, b, wire))
    check_simple_result(result, a, b)


@pytest.fixture
def repository(tmp_path):
    """simple, a copy of it named other, and a model whose config is broken."""
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    other_config = (SIMPLE / "config.pbtxt").read_text().replace('name: "simple"', 'name: "other"')
    copy_model(SIMPLE, repository, name="other", config=other_config)
    copy_model(SIMPLE, repository, name="broken", config='name: "broken"\nmax_batch_size: eight\n')
    return repository


@pytest.fixture
def explicit_server(launch_server, repository):
    """Mode explicit, with only simple loaded at start."""
    return launch_server(repository, extra=["--model-control-mode=explicit", "--load-model=simple"])


def test_explicit_mode_loads_only_the_named_models(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        assert client.is_server_ready()
        assert client.is_model_ready("simple")
        assert not client.is_model_ready("other")
        assert index_rows(client) == [
            # Never asked to load: the name alone, as in Triton.
            {"name": "broken", "version": "", "state": "", "reason": ""},
            {"name": "other", "version": "", "state": "", "reason": ""},
            {"name": "simple", "version": "1", "state": "READY", "reason": ""},
        ]
        expect_error(client, lambda: infer_simple(client, "other"), "NOT_FOUND", "other")


def test_load_serve_unload_and_load_again(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        client.load_model("other")
        assert client.is_model_ready("other")
        assert index_of(client, "other") == [{"name": "other", "version": "1", "state": "READY", "reason": ""}]
        infer_simple(client, "other", seed=1)

        client.unload_model("other")
        assert not client.is_model_ready("other")
        assert index_of(client, "other") == [
            {"name": "other", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
        ]
        expect_error(client, lambda: infer_simple(client, "other"), "UNAVAILABLE", "other", "unloaded")
        # An unloaded model does not count against readiness.
        assert client.is_server_ready()
        infer_simple(client, "simple", seed=2)

        client.load_model("other")
        infer_simple(client, "other", seed=3)
        # Unloading what is not loaded changes nothing, as in Triton.
        client.unload_model("broken")
        assert client.is_server_ready()
    assert explicit_server.wait_for_line(r"unloaded on request.*other")


def test_a_failed_load_says_why_and_counts_against_readiness(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        expect_error(
            client, lambda: client.load_model("broken"), "INVALID_ARGUMENT", "load failed for model 'broken'", "eight"
        )
        (row,) = index_of(client, "broken")
        assert (row["state"], "eight" in row["reason"]) == ("UNAVAILABLE", True), row
        # Asked to load and not ready: the server is not ready (strict
        # readiness), until the model loads or is unloaded.
        assert not client.is_server_ready()
        client.unload_model("broken")
        assert client.is_server_ready()
        assert index_of(client, "broken") == [{"name": "broken", "version": "", "state": "", "reason": ""}]
        infer_simple(client)


def test_a_failed_reload_leaves_the_model_serving(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        bad = json.dumps({"name": "simple", "max_batch_size": 8, "instance_group": [{"kind": "KIND_NOWHERE"}]})
        expect_error(
            client,
            lambda: client.load_model("simple", config=bad),
            "INVALID_ARGUMENT",
            "load failed for model 'simple'",
            "KIND_NOWHERE",
        )
        assert client.is_model_ready("simple")
        assert client.is_server_ready()
        infer_simple(client)


def test_a_load_can_replace_the_configuration(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        assert model_config(client, "simple")["max_batch_size"] == 8
        override = json.dumps({"name": "simple", "max_batch_size": 2, "dynamic_batching": {}})
        client.load_model("simple", config=override)
        config = model_config(client, "simple")
        assert config["max_batch_size"] == 2
        assert "dynamic_batching" in config
        # The inputs were completed from the model file, as without config.pbtxt.
        assert [tensor["name"] for tensor in config["input"]] == ["INPUT0", "INPUT1"]
        infer_simple(client, batch=2)
        expect_error(client, lambda: infer_simple(client, batch=3), "INVALID_ARGUMENT", "simple", "max_batch_size")
        # Loading again without a configuration reads config.pbtxt again.
        client.load_model("simple")
        assert model_config(client, "simple")["max_batch_size"] == 8
        infer_simple(client, batch=3)


def test_unknown_models_and_model_files_in_requests_are_refused(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        expect_error(client, lambda: client.load_model("nothing"), "NOT_FOUND", "'nothing'", "model repository")
        expect_error(client, lambda: client.unload_model("nothing"), "NOT_FOUND", "'nothing'")
        expect_error(
            client,
            lambda: client.load_model("other", config="{}", files={"file:1/model.onnx": b"\x08\x07"}),
            "INVALID_ARGUMENT",
            "file:1/model.onnx",
            "model repository only",
        )
        assert not client.is_model_ready("other")
        infer_simple(client)


def test_a_reload_loses_no_request(explicit_server):
    """Requests keep flowing while the model reloads three times: every one
    is answered, and correctly."""
    failures, answered = [], [0]
    stop = threading.Event()

    def send():
        with explicit_server.client("grpc") as client:
            deadline = time.monotonic() + 60
            for seed in range(100_000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    infer_simple(client, seed=seed)
                    answered[0] += 1
                except Exception as error:  # noqa: BLE001 (every failure is the finding)
                    failures.append(error)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    try:
        with explicit_server.client("grpc") as client:
            for _ in range(3):
                before = answered[0]
                client.load_model("simple")
                assert client.is_model_ready("simple")
                # Requests ran while the model was reloading and after.
                deadline = time.monotonic() + 10
                while answered[0] <= before and time.monotonic() < deadline:
                    time.sleep(0.01)
    finally:
        stop.set()
        for sender in senders:
            sender.join(70)
    assert not failures, failures[:3]
    assert answered[0] > 10


def test_load_model_star_loads_everything(launch_server, repository):
    server = launch_server(
        repository, extra=["--model-control-mode=EXPLICIT", "--load-model=*", "--exit-on-error=false"], wait="loaded"
    )
    with server.client("grpc") as client:
        states = {row["name"]: row["state"] for row in index_rows(client)}
        assert states == {"broken": "UNAVAILABLE", "other": "READY", "simple": "READY"}


def test_a_load_model_that_is_nowhere_fails_the_start(launch_server, repository):
    # Like any model that fails to load at start: exit 1 by default.
    server = launch_server(
        repository, extra=["--model-control-mode=explicit", "--load-model=simple", "--load-model=nothing"], wait="nothing"
    )
    assert server.wait_exit(30) == 1
    assert server.wait_for_line(r"failed to load: no model repository has a model of that name model=nothing")


def test_mode_none_refuses_load_and_unload(client, protocol):
    # The shared server runs in the default mode: none.
    expect_error(client, lambda: client.load_model("simple"), "UNAVAILABLE", NOT_ALLOWED, "--model-control-mode")
    expect_error(client, lambda: client.unload_model("simple"), "UNAVAILABLE", NOT_ALLOWED)
    assert index_of(client, "simple") == [{"name": "simple", "version": "1", "state": "READY", "reason": ""}]
    infer_simple(client)


def test_the_http_index_takes_ready_and_refuses_bad_bodies(explicit_server):
    url = explicit_server.http_url
    ready = post(url, "/v2/repository/index", {"ready": True})
    assert ready.status == 200, ready.body
    assert ready.json() == [{"name": "simple", "version": "1", "state": "READY", "reason": ""}]
    everything = post(url, "/v2/repository/index", {})
    assert [row["name"] for row in everything.json()] == ["broken", "other", "simple"]
    expect_error_response(post(url, "/v2/repository/index", {"ready": "yes"}), 400, "'ready' must be a boolean")
    expect_error_response(post(url, "/v2/repository/index", [1]), 400, "must be a JSON object")
    unload = post(url, "/v2/repository/models/simple/unload", {"parameters": {"unload_dependents": "no"}})
    expect_error_response(unload, 400, "simple", "'unload_dependents' parameter must be a boolean")
    load = post(url, "/v2/repository/models/other/load", {"parameters": {"config": 3}})
    expect_error_response(load, 400, "other", "'config' parameter must be a string")
    # A successful load or unload answers 200 with an empty body, as in Triton.
    loaded = post(url, "/v2/repository/models/other/load", {})
    assert (loaded.status, loaded.body) == (200, b"")
    with explicit_server.client("http") as client:
        assert client.is_model_ready("other")
