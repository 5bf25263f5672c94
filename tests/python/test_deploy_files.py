"""The deployment files name routes, ports and flags of this server; these
tests read them and make sure the real binary answers what they promise,
so a renamed flag or route cannot leave them silently wrong."""

import re

import yaml

from http_requests import http_request
from server_process import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def load(path):
    return list(yaml.safe_load_all((DEPLOY / path).read_text()))


def probe_paths(container):
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }


def test_kubernetes_probes_and_drain_fit_the_server(launch_server):
    (deployment,) = load("kubernetes/deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["tritonserver"]
    exit_timeout = next(int(arg.split("=")[1]) for arg in container["args"] if arg.startswith("--exit-timeout-secs="))
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    # Kubernetes kills the pod after the grace period: it must cover the
    # pause before SIGTERM and the server's whole drain.
    assert pod["terminationGracePeriodSeconds"] > pre_stop + exit_timeout
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The manifest's /models volume is played by the example repository.
    server = launch_server(REPO_ROOT / "examples" / "model_repository")
    for kind, path in probe_paths(container).items():
        assert http_request(server.http_url, "GET", path).status == 200, kind
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    # What an annotation-driven Prometheus scrapes is the metrics page.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("8002", "/metrics")
    assert http_request(server.url_for("metrics"), "GET", annotations["prometheus.io/path"]).status == 200


def test_kserve_runtime_serves_onnx_over_v2():
    (runtime,) = load("kserve/servingruntime.yaml")
    spec = runtime["spec"]
    assert {fmt["name"] for fmt in spec["supportedModelFormats"]} == {"onnx"}
    assert set(spec["protocolVersions"]) == {"v2", "grpc-v2"}
    (container,) = spec["containers"]
    assert "--model-repository=/mnt/models" in container["args"]
    (service,) = load("kserve/inferenceservice.yaml")
    predictor = service["spec"]["predictor"]["model"]
    assert predictor["runtime"] == runtime["metadata"]["name"]
    assert predictor["modelFormat"]["name"] == "onnx"


def test_azure_routes_are_served(launch_server):
    (deployment,) = load("azureml/deployment.yml")
    routes = deployment["environment"]["inference_config"]
    server = launch_server(REPO_ROOT / "examples" / "model_repository", extra=["--predict-model=scale_fp16"])
    assert routes["liveness_route"]["port"] == routes["readiness_route"]["port"] == 8000
    for name in ("liveness_route", "readiness_route"):
        assert http_request(server.http_url, "GET", routes[name]["path"]).status == 200, name
    scoring = http_request(server.http_url, "POST", routes["scoring_route"]["path"], {"instances": [[2, 2, 2, 2]]})
    assert scoring.status == 200 and scoring.json() == {"predictions": [[1.0, 1.0, 1.0, 1.0]]}

    (app,) = load("container-apps/containerapp.yaml")
    (container,) = app["properties"]["template"]["containers"]
    assert app["properties"]["configuration"]["ingress"]["targetPort"] == 8000
    for probe in container["probes"]:
        assert http_request(server.http_url, "GET", probe["httpGet"]["path"]).status == 200, probe["type"]


def test_dockerfile_health_check_uses_a_served_route(launch_server):
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    paths = set(re.findall(r"HEALTHCHECK.*?\n.*?(/v2/[a-z/]+)", dockerfile))
    assert paths == {"/v2/health/ready"}
    assert dockerfile.count('ENTRYPOINT ["/opt/tritonrs/bin/tritonrs"]') == 2
    assert dockerfile.count("EXPOSE 8000 8001 8002") == 2
    server = launch_server(REPO_ROOT / "examples" / "model_repository")
    assert http_request(server.http_url, "GET", "/v2/health/ready").status == 200
