"""Triton's model repository extension and model control modes, through
tritonclient over gRPC and HTTP: the index, explicit loads (with a JSON
configuration, or with model files), reloads that lose no request,
unloads, and mode `none` refusing both. Each test but the last starts its
own server on a temporary repository."""

import base64
import json
import threading
import time

import pytest

from http_requests import expect_error_response, post
from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from protocols import count, expect_error, model_config, model_stats, protocol_of
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


def test_a_load_of_an_unchanged_model_keeps_it_as_it_was(explicit_server, protocol):
    """As in Triton, loading a model whose files and configuration did not
    change keeps its versions serving as they were, statistics included;
    a changed configuration loads them anew."""
    with explicit_server.client(protocol) as client:
        infer_simple(client, batch=3)
        client.load_model("simple")
        assert count(model_stats(client, "simple", "1"), "inference_count") == 3
        override = json.dumps({"name": "simple", "max_batch_size": 8, "dynamic_batching": {}})
        client.load_model("simple", config=override)
        assert count(model_stats(client, "simple", "1"), "inference_count") == 0
        infer_simple(client, batch=2)
        client.load_model("simple", config=override)
        assert count(model_stats(client, "simple", "1"), "inference_count") == 2


def test_unknown_models_are_refused(explicit_server, protocol):
    with explicit_server.client(protocol) as client:
        expect_error(client, lambda: client.load_model("nothing"), "NOT_FOUND", "'nothing'", "model repository")
        expect_error(client, lambda: client.unload_model("nothing"), "NOT_FOUND", "'nothing'")
        infer_simple(client)


def uploaded_directories(temporary):
    return sorted(path for path in temporary.iterdir() if path.name.startswith("tritonrs-model-"))


@pytest.fixture
def upload_server(launch_server, repository, tmp_path):
    """Mode explicit with simple loaded, writing sent model files under its
    own TMPDIR, which the test looks into."""
    temporary = tmp_path / "server-tmp"
    temporary.mkdir()
    server = launch_server(
        repository, extra=["--model-control-mode=explicit", "--load-model=simple"], env={"TMPDIR": str(temporary)}
    )
    return server, temporary


def simple_json_config(name, **changes):
    return json.dumps({"name": name, "platform": "onnxruntime_onnx", "max_batch_size": 8, **changes})


def test_a_load_can_send_the_model_files(upload_server, protocol):
    """Triton's model file override: `file:<version>/<name>` parameters with
    `config` form the model's directory, for a model the repository does not
    have as for one it has; a load without files goes back to the
    repository, and the written directory goes when the model stops using it."""
    server, temporary = upload_server
    onnx = (SIMPLE / "1" / "model.onnx").read_bytes()
    with server.client(protocol) as client:
        client.load_model("sent", config=simple_json_config("sent"), files={"file:3/model.onnx": onnx})
        assert client.is_model_ready("sent")
        assert client.is_model_ready("sent", "3")
        infer_simple(client, "sent", batch=5)
        assert index_of(client, "sent") == [{"name": "sent", "version": "3", "state": "READY", "reason": ""}]
        [written] = uploaded_directories(temporary)
        assert (written / "3" / "model.onnx").read_bytes() == onnx

        # simple's own name, with a configuration of its own: the sent files win.
        client.load_model(
            "simple", config=simple_json_config("simple", max_batch_size=2), files={"file:7/model.onnx": onnx}
        )
        assert model_config(client, "simple")["max_batch_size"] == 2
        assert client.is_model_ready("simple", "7") and not client.is_model_ready("simple", "1")
        infer_simple(client, batch=2)
        assert len(uploaded_directories(temporary)) == 2
        # Loading without files reads the repository again.
        client.load_model("simple")
        assert model_config(client, "simple")["max_batch_size"] == 8
        assert client.is_model_ready("simple", "1") and not client.is_model_ready("simple", "7")
        assert uploaded_directories(temporary) == [written]

        client.unload_model("sent")
        assert not client.is_model_ready("sent")
        assert uploaded_directories(temporary) == []
        expect_error(client, lambda: client.load_model("sent"), "NOT_FOUND", "'sent'", "model repository")
        infer_simple(client)
        client.load_model("sent", config=simple_json_config("sent"), files={"file:1/model.onnx": onnx})
        assert len(uploaded_directories(temporary)) == 1
    # Shutting down unloads every model, and the directory goes with it.
    assert server.stop() == 0
    assert uploaded_directories(temporary) == []


def test_sent_model_files_are_checked(upload_server, protocol):
    server, temporary = upload_server
    onnx = (SIMPLE / "1" / "model.onnx").read_bytes()
    with server.client(protocol) as client:
        no_config = lambda: client.load_model("sent", files={"file:1/model.onnx": onnx})  # noqa: E731
        expect_error(client, no_config, "INVALID_ARGUMENT", "'sent'", "need the 'config' parameter")
        config = simple_json_config("sent")
        for path in ("file:../1/model.onnx", "file:/tmp/x/1/model.onnx"):
            escaping = lambda path=path: client.load_model("sent", config=config, files={path: onnx})  # noqa: E731
            expect_error(client, escaping, "INVALID_ARGUMENT", path, "must stay within the model directory")
        # Files that do not load leave the serving simple as it was.
        broken = lambda: client.load_model(  # noqa: E731
            "simple", config=simple_json_config("simple"), files={"file:1/model.onnx": b"not onnx"}
        )
        expect_error(client, broken, "INVALID_ARGUMENT", "load failed for model 'simple'")
        assert client.is_model_ready("simple")
        infer_simple(client)
        assert not client.is_model_ready("sent")
        assert uploaded_directories(temporary) == []


def test_http_model_files_are_base64(upload_server):
    """Over HTTP a model file is base64 text, as curl users send it."""
    server, _ = upload_server
    url = server.http_url
    onnx = (SIMPLE / "1" / "model.onnx").read_bytes()
    body = {"parameters": {"config": simple_json_config("sent"), "file:1/model.onnx": base64.b64encode(onnx).decode()}}
    loaded = post(url, "/v2/repository/models/sent/load", body)
    assert (loaded.status, loaded.body) == (200, b"")
    with server.client("http") as client:
        infer_simple(client, "sent")
    not_base64 = {"parameters": {"config": simple_json_config("sent"), "file:1/model.onnx": "*not base64*"}}
    response = post(url, "/v2/repository/models/sent/load", not_base64)
    expect_error_response(response, 400, "'file:1/model.onnx' is not valid base64")
    not_text = {"parameters": {"config": simple_json_config("sent"), "file:1/model.onnx": 3}}
    response = post(url, "/v2/repository/models/sent/load", not_text)
    expect_error_response(response, 400, "'file:1/model.onnx' must be a string")
    unload = post(url, "/v2/repository/models/sent/unload", {"parameters": {"file:1/model.onnx": "AAAA"}})
    expect_error_response(unload, 400, "sent", "unknown parameter 'file:1/model.onnx' (3 bytes)")


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
            # Each load changes the configuration, so that each reloads.
            override = json.dumps({"name": "simple", "max_batch_size": 8, "dynamic_batching": {}})
            for config in (override, None, override):
                before = answered[0]
                client.load_model("simple", config=config)
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
