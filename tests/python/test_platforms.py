"""The same binary under each cloud platform's conventions, with no
--model-repository: the repository is found where the platform puts it
(read-only), and the platform's health and predict calls are answered on
the port and routes it expects.

Platforms that mount models at fixed paths (Oracle's /opt/ds/model/
deployed_model, KServe's /mnt/models) are played in a private mount
namespace (`unshare --mount`), so nothing outside the test changes."""

import shutil
import subprocess

import pytest

from http_requests import free_port, http_request, post
from server_process import EXAMPLE_MODELS, REPO_ROOT, ServerProcess, binary_path, copy_model, server_args

MODEL = "scale_fp16"  # FP16 [batch, 4] INPUT -> OUTPUT = INPUT * 0.5
INSTANCES = [[1.0, 2.0, 3.0, 4.0], [8.0, 8.0, 8.0, 8.0]]
PREDICTIONS = [[0.5, 1.0, 1.5, 2.0], [4.0, 4.0, 4.0, 4.0]]


def one_model_repository(directory):
    copy_model(EXAMPLE_MODELS / MODEL, directory)
    return directory


def assert_predicts(url, route="/predict", headers=None, body=None):
    body = body or {"instances": INSTANCES}
    response = post(url, route, body, headers=headers)
    assert response.status == 200, response.body[:500]
    assert response.json() == {"predictions": PREDICTIONS}


def namespaces_work():
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


needs_mount_namespaces = pytest.mark.skipif(
    not namespaces_work(), reason="unshare --mount needs root or CAP_SYS_ADMIN, which this machine does not give"
)


def mounted_binary(tmp_path, source, target):
    """A launcher that runs the server with `source` mounted read-only at
    `target`, in a mount namespace of its own (the top-level folder of
    `target` is replaced by an empty tmpfs there). It execs, so the PID the
    test stops is the server's."""
    top = "/" + target.strip("/").split("/")[0]
    launcher = tmp_path / "with-platform-mount"
    launcher.write_text(
        "#!/bin/sh\n"
        "set -e\n"
        "exec unshare --mount --propagation private sh -c '\n"
        f'  mount -t tmpfs platform "{top}"\n'
        f'  mkdir -p "{target}"\n'
        f'  mount --bind -o ro "{source}" "{target}"\n'
        '  exec "$0" "$@"\' ' + f'"{binary_path()}" "$@"\n'
    )
    launcher.chmod(0o755)
    return launcher


@needs_mount_namespaces
def test_oracle_model_deployment(launch_server, tmp_path):
    # The model artifact is a zip of model_repository/, which the platform
    # unzips and mounts read-only; /health and /predict answer on the port
    # the deployment configures (any of 1024-65535 but 24224, 8446, 8447).
    artifact = tmp_path / "artifact"
    one_model_repository(artifact / "model_repository")
    port = free_port()
    server = launch_server(
        binary=mounted_binary(tmp_path, artifact, "/opt/ds/model/deployed_model"),
        env={"TRITONRS_HTTP_PORT": str(port)},
        http_port=None,
    )
    assert "Oracle Cloud model deployment mount" in server.log
    url = f"127.0.0.1:{port}"
    health = http_request(url, "GET", "/health")
    assert (health.status, health.json()) == (200, {"status": "ready"})
    assert_predicts(url)


@needs_mount_namespaces
def test_oracle_model_deployment_as_triton(launch_server, tmp_path):
    # With CONTAINER_TYPE=TRITON the platform checks /v2/health/ready and
    # sends predictions to /v2/models/{model_name}/versions/{model_version}/infer,
    # naming the model in headers as well.
    artifact = tmp_path / "artifact"
    one_model_repository(artifact / "model_repository")
    copy_model(EXAMPLE_MODELS / "simple", artifact / "model_repository")
    server = launch_server(
        binary=mounted_binary(tmp_path, artifact, "/opt/ds/model/deployed_model"),
        env={"CONTAINER_TYPE": "TRITON"},
    )
    assert "CONTAINER_TYPE=TRITON" in server.log
    url = server.http_url
    assert http_request(url, "GET", "/v2/health/ready").status == 200
    headers = {"model_name": MODEL, "model_version": "1"}
    request = {"inputs": [{"name": "INPUT", "shape": [2, 4], "datatype": "FP16", "data": INSTANCES}]}
    response = post(url, f"/v2/models/{MODEL}/versions/1/infer", request, headers=headers)
    assert response.status == 200, response.body[:500]
    assert response.json()["outputs"][0]["data"] == [value for row in PREDICTIONS for value in row]
    # /predict routes by the same headers, with several models present.
    assert_predicts(url, headers=headers)


@needs_mount_namespaces
def test_kserve(launch_server, tmp_path):
    # KServe's storage initializer puts the repository at /mnt/models; the
    # ServingRuntime in deploy/kserve passes its ports as flags.
    server = launch_server(binary=mounted_binary(tmp_path, one_model_repository(tmp_path / "models"), "/mnt/models"))
    assert "KServe model mount" in server.log
    request = {"inputs": [{"name": "INPUT", "shape": [2, 4], "datatype": "FP16", "data": INSTANCES}]}
    response = post(server.http_url, f"/v2/models/{MODEL}/infer", request)
    assert response.status == 200, response.body[:500]
    assert http_request(server.http_url, "GET", f"/v2/models/{MODEL}/ready").status == 200


def test_azure_machine_learning(launch_server, tmp_path):
    # Azure ML mounts a registered model folder inside AZUREML_MODEL_DIR;
    # the deployment's inference_config names the liveness, readiness and
    # scoring routes (deploy/azureml/deployment.yml).
    model_dir = tmp_path / "azureml-models" / "wine" / "1"
    one_model_repository(model_dir / "model_repository")
    server = launch_server(env={"AZUREML_MODEL_DIR": str(model_dir)})
    assert "AZUREML_MODEL_DIR" in server.log
    url = server.http_url
    assert http_request(url, "GET", "/v2/health/live").status == 200
    assert http_request(url, "GET", "/v2/health/ready").status == 200
    assert_predicts(url)


def test_vertex_ai(launch_server, tmp_path):
    # Vertex AI tells the container its port and routes in AIP_* variables
    # and posts {"instances": [...], "parameters": {...}}.
    port = free_port()
    health_route = "/v1/endpoints/123/deployedModels/456"
    predict_route = "/v1/endpoints/123/deployedModels/456:predict"
    repository = one_model_repository(tmp_path / "models")
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": health_route,
        "AIP_PREDICT_ROUTE": predict_route,
        "AIP_STORAGE_URI": f"file://{repository}",
    }
    server = launch_server(env=env, http_port=None)
    assert "AIP_HTTP_PORT" in server.log and "AIP_STORAGE_URI" in server.log
    url = f"127.0.0.1:{port}"
    assert http_request(url, "GET", health_route).status == 200
    assert_predicts(url, route=predict_route, body={"instances": INSTANCES, "parameters": {"confidence": 0.5}})


def test_vertex_ai_prediction_mode_serves_the_vertex_endpoint_alone(tmp_path):
    """With AIP_MODE=PREDICTION, as Vertex AI runs a container, Triton
    serves the Vertex AI endpoint on AIP_HTTP_PORT (its health and predict
    routes, nothing else) and turns HTTP and gRPC off; metrics stay."""
    port = free_port()
    health_route = "/v1/endpoints/123/deployedModels/456"
    predict_route = "/v1/endpoints/123/deployedModels/456:predict"
    env = {
        "AIP_MODE": "PREDICTION",
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": health_route,
        "AIP_PREDICT_ROUTE": predict_route,
    }
    repository = one_model_repository(tmp_path / "models")
    args = [f"--model-repository={repository}", "--http-address=127.0.0.1", "--metrics-port=0"]
    server = ServerProcess(args, env=env)
    try:
        server.wait_for_line(rf"Started Vertex AI HTTPService at 127\.0\.0\.1:{port}")
        server.wait_for_line(r"server is ready")
        assert "Started HTTPService" not in server.log and "Started GRPCInferenceService" not in server.log
        assert "Started Metrics Service" in server.log
        url = f"127.0.0.1:{port}"
        assert http_request(url, "GET", health_route).status == 200
        assert_predicts(url, route=predict_route)
        config = http_request(url, "POST", predict_route, headers={"X-Vertex-Ai-Triton-Redirect": f"v2/models/{MODEL}/config"})
        assert config.status == 200 and config.json()["name"] == MODEL, config.body
        for method, path in (("GET", "/v2/health/ready"), ("POST", f"/v2/models/{MODEL}/infer"), ("GET", "/health")):
            answer = http_request(url, method, path)
            assert answer.status == 404 and b"not a route of the Vertex AI endpoint" in answer.body, answer.body
    finally:
        assert server.stop() == 0, server.log


def test_vertex_ai_endpoint_beside_http_when_asked(launch_server, tmp_path):
    """--allow-vertex-ai outside Vertex AI: its own port, beside HTTP."""
    port = free_port()
    flags = ["--allow-vertex-ai=true", f"--vertex-ai-port={port}", "--predict-route=/score"]
    server = launch_server(one_model_repository(tmp_path / "models"), extra=flags)
    server.wait_for_line(rf"Started Vertex AI HTTPService at 127\.0\.0\.1:{port}")
    assert_predicts(f"127.0.0.1:{port}", route="/score")
    assert_predicts(server.http_url, route="/score")
    assert http_request(f"127.0.0.1:{port}", "GET", "/v2").status == 404
    assert http_request(server.http_url, "GET", "/v2").status == 200


def test_model_repository_variable(launch_server, tmp_path):
    server = launch_server(env={"MODEL_REPOSITORY": str(one_model_repository(tmp_path / "models"))})
    assert "from MODEL_REPOSITORY" in server.log
    assert_predicts(server.http_url)


def test_no_repository_anywhere_is_explained():
    finished = subprocess.run(
        [str(binary_path()), *server_args()],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        timeout=30,
    )
    assert finished.returncode == 1, finished.stderr.decode()
    assert b"no model repository" in finished.stderr and b"--model-repository" in finished.stderr
