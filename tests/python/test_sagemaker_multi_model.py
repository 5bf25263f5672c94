"""Amazon SageMaker's multi-model endpoints, as Triton serves them: started
with `serve` and SAGEMAKER_MULTI_MODEL=true, the container loads each model
archive SageMaker unpacks to <root>/<hash>/model when asked (POST /models),
lists and describes them (GET /models[/<hash>]), runs them
(POST /models/<hash>/invoke) and unloads them (DELETE /models/<hash>). The
model serves under the name in X-Amzn-SageMaker-Target-Model."""

import numpy as np
import pytest
import tritonclient.http as httpclient

from http_requests import expect_error_response, free_port, http_request, post
from model_requests import simple_data
from server_process import EXAMPLE_MODELS, ServerProcess, copy_model
from test_ensembles import TWICE, ensemble_dir

BINARY = "application/vnd.sagemaker-triton.binary+json;json-header-size="
TARGET = "X-Amzn-SageMaker-Target-Model"


def v2_body(inputs, binary):
    tensors = []
    for name, data in inputs.items():
        tensor = httpclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        tensors.append(tensor)
    return httpclient.InferenceServerClient.generate_request_body(tensors)


def invoke(address, hash_, inputs, binary=False):
    body, json_size = v2_body(inputs, binary)
    content_type = f"{BINARY}{json_size}" if json_size is not None else "application/json"
    return post(address, f"/models/{hash_}/invoke", body, headers={"Content-Type": content_type})


def outputs(response):
    assert response.status == 200, response.body
    content_type = response.headers.get("content-type", "")
    header_length = int(content_type[len(BINARY) :]) if content_type.startswith(BINARY) else None
    return httpclient.InferenceServerClient.parse_response_body(response.body, header_length=header_length)


def load(address, hash_, url, target=None):
    headers = {TARGET: target} if target else {}
    return post(address, "/models", {"model_name": hash_, "url": str(url)}, headers=headers)


@pytest.fixture
def archives(tmp_path):
    """Three archives as SageMaker unpacks them: a model's folder inside
    `model`, `model` itself a model folder, and an ensemble with the model
    its steps run."""
    root = tmp_path / "models"
    copy_model(EXAMPLE_MODELS / "simple", root / "abc123" / "model")
    copy_model(EXAMPLE_MODELS / "simple", root / "def456", name="model")
    for ensemble in ("e789", "f012"):
        copy_model(EXAMPLE_MODELS / "simple", root / ensemble / "model")
        ensemble_dir(root / ensemble / "model", "twice", TWICE)
    return root


@pytest.fixture
def endpoint(tmp_path, archives):
    port = free_port()
    start = tmp_path / "start"
    start.mkdir()
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_BIND_TO_PORT": str(port)}
    args = [
        "serve",
        "--http-address=127.0.0.1",
        f"--model-repository={start}",
        f"--sagemaker-multi-model-directory={archives}",
    ]
    server = ServerProcess(args, env=env)
    try:
        server.wait_for_line(rf"Started Sagemaker HTTPService at 127\.0\.0\.1:{port}")
        server.wait_for_line(r"server is ready")
        yield server, f"127.0.0.1:{port}"
    finally:
        assert server.stop() == 0, server.log


def test_archives_load_run_list_and_unload(endpoint, archives):
    server, address = endpoint
    assert http_request(address, "GET", "/ping").status == 200
    assert http_request(address, "GET", "/models").json() == {"models": []}

    first, second = archives / "abc123" / "model", archives / "def456" / "model"
    assert load(address, "abc123", first, target="simple-v1.tar.gz").status == 200, server.log
    assert load(address, "def456", second, target="simple-v2.tar.gz").status == 200, server.log
    assert "loading SageMaker TargetModel" in server.log
    listed = http_request(address, "GET", "/models").json()
    assert listed == {
        "models": [
            {"modelName": "abc123", "modelUrl": str(first)},
            {"modelName": "def456", "modelUrl": str(second)},
        ]
    }
    assert http_request(address, "GET", "/models/def456").json() == {"modelName": "def456", "modelUrl": str(second)}

    a, b = simple_data(batch=2, seed=3)
    for hash_, binary in (("abc123", True), ("def456", False)):
        result = outputs(invoke(address, hash_, {"INPUT0": a, "INPUT1": b}, binary=binary))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)

    assert http_request(address, "DELETE", "/models/abc123").status == 200, server.log
    for method, path in (("GET", "/models/abc123"), ("DELETE", "/models/abc123")):
        expect_error_response(http_request(address, method, path), 404, "abc123")
    expect_error_response(invoke(address, "abc123", {"INPUT0": a, "INPUT1": b}), 404, "not loaded")
    assert [model["modelName"] for model in http_request(address, "GET", "/models").json()["models"]] == ["def456"]
    # Unloaded, the archive's repository is gone too: it loads again.
    assert load(address, "abc123", first, target="simple-v1.tar.gz").status == 200, server.log
    outputs(invoke(address, "abc123", {"INPUT0": a, "INPUT1": b}))


def test_ensemble_archives_serve_their_ensembles_side_by_side(endpoint, archives):
    """Two archives of the same folders (twice, and simple that it runs)
    load side by side, each ensemble running its own archive's simple."""
    server, address = endpoint
    for hash_, target in (("e789", "pipeline.tar.gz"), ("f012", "pipeline-b.tar.gz")):
        assert load(address, hash_, archives / hash_ / "model", target=target).status == 200, server.log
    assert "pipeline.tar.gz/simple" in server.log and "pipeline-b.tar.gz/simple" in server.log
    a, b = simple_data(batch=1, seed=5)
    for hash_ in ("e789", "f012"):
        result = outputs(invoke(address, hash_, {"A": a, "B": b}))
        np.testing.assert_array_equal(result.as_numpy("TWICE_A"), 2 * a)
        np.testing.assert_array_equal(result.as_numpy("SUM"), a + b)
    assert http_request(address, "DELETE", "/models/e789").status == 200, server.log
    assert "unloaded with the ensemble it was loaded for" in server.log
    outputs(invoke(address, "f012", {"A": a, "B": b}))


def test_bad_loads_say_why(endpoint, archives, tmp_path):
    server, address = endpoint
    first = archives / "abc123" / "model"
    expect_error_response(load(address, "x", tmp_path / "start"), 400, "expected a path of the form")
    expect_error_response(load(address, "x", first / ".." / ".." / ".." / ".."), 400, "expected a path of the form")
    expect_error_response(post(address, "/models", {"url": str(first)}), 400, "'model_name'")
    expect_error_response(load(address, "nothere", archives / "nothere" / "model"), 400, "not a directory")
    assert load(address, "abc123", first, target="one.tar.gz").status == 200, server.log
    expect_error_response(load(address, "abc123", first, target="one.tar.gz"), 409, "already loaded")
    # Another hash for the same archive, or for the name another one has.
    expect_error_response(load(address, "again", first, target="two.tar.gz"), 409, "already been registered")
    second = archives / "def456" / "model"
    expect_error_response(load(address, "def456", second, target="one.tar.gz"), 409, "conflicting mapping")

    broken = archives / "bad1" / "model"
    copy_model(EXAMPLE_MODELS / "simple", broken.parent, name="model")
    (broken / "1" / "model.onnx").write_bytes(b"not an onnx file")
    expect_error_response(load(address, "bad1", broken, target="bad.tar.gz"), 400, "bad.tar.gz")
    assert [model["modelName"] for model in http_request(address, "GET", "/models").json()["models"]] == ["abc123"]
    # The failed archive left nothing behind: mended, it loads.
    (broken / "1" / "model.onnx").write_bytes((EXAMPLE_MODELS / "simple" / "1" / "model.onnx").read_bytes())
    assert load(address, "bad1", broken, target="bad.tar.gz").status == 200, server.log
