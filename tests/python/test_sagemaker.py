"""Amazon SageMaker's container contract, as Triton serves it: GET /ping and
POST /invocations on a port of their own, with --allow-sagemaker, or with
`serve` as the first argument (how SageMaker starts a container). Requests
are built and read with tritonclient's helpers, as Triton's own SageMaker
tests do."""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from http_requests import expect_error_response, free_port, http_request, post
from model_requests import simple_data
from server_process import EXAMPLE_MODELS, ServerProcess, copy_model

BINARY = "application/vnd.sagemaker-triton.binary+json;json-header-size="


def simple_v2_inputs(a, b, binary):
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    return inputs


def invoke(url, body, content_type):
    return post(url, "/invocations", body, headers={"Content-Type": content_type})


def check_answer(response, a, b):
    assert response.status == 200, response.body
    content_type = response.headers.get("content-type", "")
    header_length = int(content_type[len(BINARY) :]) if content_type.startswith(BINARY) else None
    result = httpclient.InferenceServerClient.parse_response_body(response.body, header_length=header_length)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    return header_length


@pytest.fixture
def sagemaker_server(launch_server):
    port = free_port()
    flags = ["--allow-sagemaker=true", f"--sagemaker-port={port}"]
    server = launch_server(EXAMPLE_MODELS, extra=flags, env={"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "simple"})
    server.wait_for_line(rf"Started Sagemaker HTTPService at 127\.0\.0\.1:{port}")
    return f"127.0.0.1:{port}"


def test_ping_and_json_invocations(sagemaker_server):
    assert http_request(sagemaker_server, "GET", "/ping").status == 200
    a, b = simple_data(batch=2)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=False) for name in ("OUTPUT0", "OUTPUT1")]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        simple_v2_inputs(a, b, binary=False), outputs=outputs
    )
    assert json_size is None
    answer = invoke(sagemaker_server, body, "application/json")
    assert answer.headers.get("content-type") == "application/json"
    assert check_answer(answer, a, b) is None


def test_binary_invocations_carry_the_json_size_in_the_content_type(sagemaker_server):
    a, b = simple_data(batch=3, seed=7)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in ("OUTPUT0", "OUTPUT1")]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        simple_v2_inputs(a, b, binary=True), outputs=outputs
    )
    header_length = check_answer(invoke(sagemaker_server, body, f"{BINARY}{json_size}"), a, b)
    assert header_length is not None and header_length > 0
    bad = invoke(sagemaker_server, body, f"{BINARY}lots")
    expect_error_response(bad, 400, "Unable to parse inference header size")


def test_other_routes_are_not_there(sagemaker_server):
    assert http_request(sagemaker_server, "GET", "/v2/health/ready").status == 404
    assert http_request(sagemaker_server, "GET", "/invocations").status == 405


def test_without_a_default_model_the_only_one_is_used(launch_server, tmp_path):
    one = tmp_path / "one"
    copy_model(EXAMPLE_MODELS / "simple", one)
    port = free_port()
    server = launch_server(one, extra=["--allow-sagemaker=true", f"--sagemaker-port={port}"])
    server.wait_for_line(r"Started Sagemaker HTTPService")
    a, b = simple_data(batch=1)
    body, _ = httpclient.InferenceServerClient.generate_request_body(simple_v2_inputs(a, b, binary=False))
    check_answer(invoke(f"127.0.0.1:{port}", body, "application/json"), a, b)

    several = launch_server(EXAMPLE_MODELS, extra=["--allow-sagemaker=true", f"--sagemaker-port={free_port()}"])
    address = several.wait_for_line(r"Started Sagemaker HTTPService at (127\.0\.0\.1:\d+)").group(1)
    expect_error_response(invoke(address, body, "application/json"), 400, "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME")


def test_serve_starts_as_sagemaker_does(tmp_path):
    """`docker run IMAGE serve`: only the SageMaker routes, on
    SAGEMAKER_BIND_TO_PORT, with the generate inference type here."""
    repository = tmp_path / "model"
    copy_model(EXAMPLE_MODELS / "simple", repository)
    port = free_port()
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_TRITON_INFERENCE_TYPE": "generate"}
    server = ServerProcess(["serve", "--http-address=127.0.0.1", f"--model-repository={repository}"], env=env)
    try:
        server.wait_for_line(rf"Started Sagemaker HTTPService at 127\.0\.0\.1:{port}")
        server.wait_for_line(r"server is ready")
        assert "Started HTTPService" not in server.log and "Started GRPCInferenceService" not in server.log
        address = f"127.0.0.1:{port}"
        assert http_request(address, "GET", "/ping").status == 200
        answer = post(address, "/invocations", {"INPUT0": list(range(16)), "INPUT1": [1] * 16})
        assert answer.status == 200, answer.body
        generated = json.loads(answer.body)
        assert generated["OUTPUT0"] == [n + 1 for n in range(16)]
        assert generated["OUTPUT1"] == [n - 1 for n in range(16)]
    finally:
        assert server.stop() == 0, server.log


def test_serve_loads_only_the_endpoints_model(tmp_path):
    """The serve script of Triton's image loads only
    SAGEMAKER_TRITON_DEFAULT_MODEL_NAME (explicit model control); gRPC,
    asked for, listens on SAGEMAKER_TRITON_GRPC_PORT."""
    repository = tmp_path / "model"
    copy_model(EXAMPLE_MODELS / "simple", repository)
    copy_model(EXAMPLE_MODELS / "simple", repository, name="other")
    grpc_port = free_port()
    env = {
        "SAGEMAKER_BIND_TO_PORT": str(free_port()),
        "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "simple",
        "SAGEMAKER_TRITON_ALLOW_GRPC": "true",
        "SAGEMAKER_TRITON_GRPC_PORT": str(grpc_port),
    }
    server = ServerProcess(["serve", "--grpc-address=127.0.0.1", f"--model-repository={repository}"], env=env)
    try:
        server.wait_for_line(rf"Started GRPCInferenceService at 127\.0\.0\.1:{grpc_port}")
        server.wait_for_line(r"server is ready")
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            assert client.is_model_ready("simple")
            assert not client.is_model_ready("other")
            models = client.get_model_repository_index(as_json=True)["models"]
            index = {model["name"]: model.get("state", "") for model in models}
            assert index == {"simple": "READY", "other": ""}, index
    finally:
        assert server.stop() == 0, server.log


def test_serve_refuses_a_repository_of_several_models_without_a_default(tmp_path):
    repository = tmp_path / "model"
    copy_model(EXAMPLE_MODELS / "simple", repository)
    copy_model(EXAMPLE_MODELS / "simple", repository, name="other")
    env = {"SAGEMAKER_BIND_TO_PORT": str(free_port())}
    server = ServerProcess(["serve", f"--model-repository={repository}"], env=env)
    try:
        assert server.wait_exit(timeout=30) != 0
        assert "holds several models (other, simple)" in server.log, server.log
        assert "SAGEMAKER_TRITON_DEFAULT_MODEL_NAME" in server.log
    finally:
        server.stop()


def test_http_restrictions_cover_the_sagemaker_routes(launch_server):
    port = free_port()
    flags = [
        "--allow-sagemaker=true",
        f"--sagemaker-port={port}",
        "--http-restricted-api=inference:api-key=k",
        "--http-restricted-api=model-repository:admin-key=a",
    ]
    server = launch_server(EXAMPLE_MODELS, extra=flags, env={"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "simple"})
    server.wait_for_line(r"Started Sagemaker HTTPService")
    address = f"127.0.0.1:{port}"
    a, b = simple_data(batch=1)
    body, _ = httpclient.InferenceServerClient.generate_request_body(simple_v2_inputs(a, b, binary=False))
    expect_error_response(invoke(address, body, "application/json"), 403, "expecting header 'api-key'")
    allowed = post(address, "/invocations", body, headers={"Content-Type": "application/json", "api-key": "k"})
    check_answer(allowed, a, b)
    assert http_request(address, "GET", "/ping").status == 200
    # The multi-model routes: loading and listing are model-repository,
    # invoking is inference.
    expect_error_response(http_request(address, "GET", "/models"), 403, "expecting header 'admin-key'")
    assert http_request(address, "GET", "/models", headers={"admin-key": "a"}).json() == {"models": []}
    expect_error_response(post(address, "/models/h/invoke", body), 403, "expecting header 'api-key'")
