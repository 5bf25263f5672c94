"""The routes of cloud model deployments: `GET /health` (200 when every model
is ready, else 503 naming what is not) and `POST /predict` (a KServe v2
request, or `{"instances": [...]}` rows of a single-input model), with the
model chosen by header, flag, environment or the repository, and both
routes and the port moved by flags and environment variables."""

import subprocess

import numpy as np
import pytest
import tritonclient.http as httpclient

from http_requests import (
    SIMPLE_JSON,
    assert_http_serves,
    check_simple_json_answer,
    expect_error_response,
    free_port,
    http_request,
    post,
)
from server_process import EXAMPLE_MODELS, REPO_ROOT, binary_path, copy_model, server_args


def predict(url, body, model=None, version=None, route="/predict", headers=None):
    headers = dict(headers or {})
    if model is not None:
        headers["model_name"] = model
    if version is not None:
        headers["model_version"] = version
    return post(url, route, body, headers)


def predictions(response):
    assert response.status == 200, response.body
    return response.json()["predictions"]


def v2_answer(response):
    assert response.status == 200, response.body
    return response.json()


# A different input in each of ten rows, each exact in FP16.
TEN_ROWS = [[row + 0.5 * col for col in range(4)] for row in range(10)]


def check_scale_fp16(url, **options):
    """/predict on scale_fp16 halves every row."""
    answer = predictions(predict(url, {"instances": TEN_ROWS[:3]}, **options))
    assert answer == [[value * 0.5 for value in row] for row in TEN_ROWS[:3]]


def repository_of(tmp_path, *models):
    """A repository with copies of these example models."""
    repository = tmp_path / "models"
    for model in models:
        copy_model(EXAMPLE_MODELS / model, repository)
    return repository


@pytest.fixture
def single_model_repository(tmp_path):
    return repository_of(tmp_path, "scale_fp16")


# --- /health -------------------------------------------------------------


def test_health_when_ready(http_url):
    response = http_request(http_url, "GET", "/health")
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "ready"}
    # Load balancers often probe with HEAD.
    assert http_request(http_url, "HEAD", "/health").status == 200


def test_health_names_the_model_that_failed_to_load(launch_server, tmp_path):
    repository = tmp_path / "models"
    copy_model(EXAMPLE_MODELS / "simple", repository)
    copy_model(EXAMPLE_MODELS / "simple", repository, name="broken", config='name: "broken"\nmax_batch_size: eight\n')
    server = launch_server(repository, extra=["--exit-on-error=false"], wait="loaded")
    expect_error_response(http_request(server.http_url, "GET", "/health"), 503, "broken")
    # The other model is served all the same.
    assert http_request(server.http_url, "GET", "/v2/models/simple/ready").status == 200
    check_simple_json_answer(post(server.http_url, "/v2/models/simple/infer", SIMPLE_JSON).json())


# --- /predict: which model -------------------------------------------------


def test_model_from_headers(http_url):
    check_scale_fp16(http_url, model="scale_fp16")
    check_scale_fp16(http_url, model="scale_fp16", version="1")


def test_unknown_model_or_version_in_headers(http_url):
    expect_error_response(predict(http_url, {"instances": [[1]]}, model="no_such_model"), 404, "no_such_model")
    response = predict(http_url, {"instances": [[1, 2, 3, 4]]}, model="scale_fp16", version="2")
    expect_error_response(response, 404, "scale_fp16", "2")
    response = predict(http_url, {"instances": [[1, 2, 3, 4]]}, model="scale_fp16", version="two")
    expect_error_response(response, 400, "scale_fp16", "'two'")


def test_without_a_model_name_the_models_are_listed(http_url):
    # The shared server has many models and no --predict-model.
    response = predict(http_url, {"instances": [[1, 2, 3, 4]]})
    message = expect_error_response(response, 400, "model_name", "--predict-model")
    for model in ("simple", "scale_fp16", "busy_loop", "identity_bytes"):
        assert model in message


def test_model_from_the_predict_model_flag(launch_server):
    server = launch_server(EXAMPLE_MODELS, extra=["--predict-model=scale_fp16"])
    check_scale_fp16(server.http_url)
    # A header still names another model.
    check_simple_json_answer(v2_answer(predict(server.http_url, SIMPLE_JSON, model="simple")))


def test_model_from_the_environment(launch_server):
    server = launch_server(EXAMPLE_MODELS, env={"TRITONRS_PREDICT_MODEL": "scale_fp16"})
    check_scale_fp16(server.http_url)


def test_the_only_model_of_a_repository(launch_server, single_model_repository):
    server = launch_server(single_model_repository)
    check_scale_fp16(server.http_url)


# --- /predict: the body ----------------------------------------------------


def test_v2_json_body(http_url):
    answer = v2_answer(predict(http_url, SIMPLE_JSON, model="simple"))
    assert answer["model_name"] == "simple"
    check_simple_json_answer(answer)


def test_v2_body_with_binary_data(http_url):
    # What tritonclient.http sends: JSON, then the tensors as binary data,
    # split by Inference-Header-Content-Length; the outputs come back the
    # same way.
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 7, dtype=np.int32)
    inputs = [
        httpclient.InferInput("INPUT0", [1, 16], "INT32").set_data_from_numpy(a),
        httpclient.InferInput("INPUT1", [1, 16], "INT32").set_data_from_numpy(b),
    ]
    outputs = [httpclient.InferRequestedOutput("OUTPUT0"), httpclient.InferRequestedOutput("OUTPUT1")]
    body, json_length = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    assert json_length is not None and json_length < len(body)
    response = predict(http_url, body, model="simple", headers={"Inference-Header-Content-Length": str(json_length)})
    assert response.status == 200, response.body
    result = httpclient.InferenceServerClient.parse_response_body(
        response.body, header_length=int(response.headers["inference-header-content-length"])
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_instances_are_split_into_batches(http_url):
    # scale_fp16 batches up to max_batch_size 4, so ten rows cannot go in
    # one request: the server must split them (a single batch of ten would
    # be refused) and keep the rows in order.
    answer = predictions(predict(http_url, {"instances": TEN_ROWS}, model="scale_fp16"))
    assert answer == [[value * 0.5 for value in row] for row in TEN_ROWS]


def test_instances_on_a_model_that_does_not_batch(http_url):
    # busy_loop: INT64 [1] with no batch dimension, one request per instance.
    answer = predictions(predict(http_url, {"instances": [[3], [5]]}, model="busy_loop"))
    assert answer == [[3], [5]]


def test_instances_with_parameters(http_url):
    body = {"instances": [[3], [5], [7]], "parameters": {"priority": 1, "note": "from a test", "flag": True}}
    assert predictions(predict(http_url, body, model="busy_loop")) == [[3], [5], [7]]


def test_instances_of_strings(http_url):
    body = {"instances": [["a", ""], ["grüße", "x y"]]}
    assert predictions(predict(http_url, body, model="identity_bytes")) == [["a", ""], ["grüße", "x y"]]


def test_no_instances(http_url):
    assert predictions(predict(http_url, {"instances": []}, model="scale_fp16")) == []


def test_instances_on_a_model_with_two_inputs(http_url):
    response = predict(http_url, {"instances": [[1] * 16]}, model="simple")
    expect_error_response(response, 400, "simple", "INPUT0, INPUT1", '"inputs"')


@pytest.mark.parametrize(
    "instances, fragments",
    [
        ([[1, 2, 3, 4], [1, 2]], ["instance 1", "[2]", "[4]"]),
        ([[[1, 2], [3]]], ["instance 0", "different lengths"]),
    ],
    ids=["rows-of-different-lengths", "ragged-nesting"],
)
def test_ragged_instances(http_url, instances, fragments):
    response = predict(http_url, {"instances": instances}, model="scale_fp16")
    expect_error_response(response, 400, "scale_fp16", *fragments)
    assert_http_serves(http_url)


@pytest.mark.parametrize(
    "body, status, fragments",
    [
        (b"not json", 400, ["not JSON"]),
        ({"rows": [[1, 2, 3, 4]]}, 400, ["inputs", "instances"]),
        ({"instances": "1,2,3,4"}, 400, ["instances", "list"]),
        ({"instances": [[1, 2, 3]]}, 400, ["scale_fp16", "INPUT", "[1,3]"]),
        ({"instances": [["a", "b", "c", "d"]]}, 400, ["scale_fp16", "a number"]),
    ],
    ids=["not-json", "neither-inputs-nor-instances", "instances-not-a-list", "wrong-row-shape", "wrong-row-type"],
)
def test_bad_predict_bodies(http_url, body, status, fragments):
    expect_error_response(predict(http_url, body, model="scale_fp16"), status, *fragments)
    assert_http_serves(http_url)


# --- Vertex AI's X-Vertex-Ai-Triton-Redirect ---------------------------------


def redirected(url, target, body=None, method="POST"):
    return http_request(url, method, "/predict", body, headers={"X-Vertex-Ai-Triton-Redirect": target})


def test_the_redirect_header_serves_the_v2_route_it_names(http_url):
    answer = v2_answer(redirected(http_url, "v2/models/simple/versions/1/infer", SIMPLE_JSON))
    assert (answer["model_name"], answer["model_version"]) == ("simple", "1")
    check_simple_json_answer(answer)
    # Read-only routes are served as their GET, though Vertex AI POSTs.
    assert v2_answer(redirected(http_url, "v2/models/scale_fp16/config"))["name"] == "scale_fp16"
    assert v2_answer(redirected(http_url, "v2/models/simple"))["platform"] == "onnxruntime_onnx"
    assert redirected(http_url, "v2/health/ready").status == 200
    assert redirected(http_url, "/v2/models/simple/ready").status == 200
    assert "model_stats" in v2_answer(redirected(http_url, "v2/models/stats"))
    assert any(row["name"] == "simple" for row in v2_answer(redirected(http_url, "v2/repository/index")))


def test_the_redirect_header_refuses_what_triton_refuses(http_url):
    load = redirected(http_url, "v2/repository/models/simple/unload")
    expect_error_response(load, 403, "loading and unloading models", "not allowed")
    register = redirected(http_url, "v2/systemsharedmemory/region/r/register", {"key": "/r", "byte_size": 8})
    expect_error_response(register, 403, "registering shared memory")
    expect_error_response(redirected(http_url, "v3/anything"), 400, "'v3/anything' is not a v2 route")
    expect_error_response(redirected(http_url, "v2/models/simple/infer", method="GET"), 405, "GET")
    # Without the header, /predict is itself.
    check_simple_json_answer(v2_answer(predict(http_url, SIMPLE_JSON, model="simple")))


def test_predict_is_post_only(http_url):
    expect_error_response(http_request(http_url, "GET", "/predict"), 405, "/predict")


# --- routes and port moved ---------------------------------------------------


def assert_moved_routes(url, health, predict_route):
    assert http_request(url, "GET", health).json() == {"status": "ready"}
    check_scale_fp16(url, route=predict_route)
    # The default paths are gone, and the KServe v2 routes stay.
    expect_error_response(http_request(url, "GET", "/health"), 404, "/health")
    expect_error_response(predict(url, {"instances": TEN_ROWS[:1]}), 404, "/predict")
    assert_http_serves(url)


def test_routes_moved_by_flags(launch_server, tmp_path):
    flags = ["--health-route=/healthz", "--predict-route=/score", "--predict-model=scale_fp16"]
    server = launch_server(repository_of(tmp_path, "scale_fp16", "simple"), extra=flags)
    assert_moved_routes(server.http_url, "/healthz", "/score")


def test_routes_moved_by_the_environment(launch_server, tmp_path):
    # The predict route of Vertex AI's custom containers, colon included.
    env = {
        "TRITONRS_HEALTH_ROUTE": "/ping",
        "TRITONRS_PREDICT_ROUTE": "/v1/models/model:predict",
        "TRITONRS_PREDICT_MODEL": "scale_fp16",
    }
    server = launch_server(repository_of(tmp_path, "scale_fp16", "simple"), env=env)
    assert_moved_routes(server.http_url, "/ping", "/v1/models/model:predict")


def test_port_from_the_environment(launch_server, single_model_repository):
    port = free_port()
    server = launch_server(single_model_repository, env={"TRITONRS_HTTP_PORT": str(port)}, http_port=None)
    assert server.ports["http"] == port
    assert http_request(f"127.0.0.1:{port}", "GET", "/v2/health/ready").status == 200
    check_scale_fp16(f"127.0.0.1:{port}")


# id: (flags, environment) giving a route the server must refuse.
INVALID_ROUTES = {
    "relative-predict-route": (["--predict-route=predict"], {}),
    "relative-health-route": (["--health-route=health"], {}),
    "health-route-under-v2": (["--health-route=/v2/x"], {}),
    "predict-route-v2": (["--predict-route=/v2"], {}),
    "predict-route-pattern": (["--predict-route=/models/{model}"], {}),
    "relative-predict-route-from-env": ([], {"TRITONRS_PREDICT_ROUTE": "predict"}),
    "health-route-under-v2-from-env": ([], {"TRITONRS_HEALTH_ROUTE": "/v2/health/ready"}),
}


@pytest.mark.parametrize("case", INVALID_ROUTES)
def test_invalid_routes_are_usage_errors(case):
    flags, env = INVALID_ROUTES[case]
    finished = subprocess.run(
        [str(binary_path()), *server_args(EXAMPLE_MODELS, extra=flags)],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **env},
        capture_output=True,
        timeout=30,
    )
    assert finished.returncode == 2, finished.stderr.decode()
    assert b"route" in finished.stderr, finished.stderr.decode()
