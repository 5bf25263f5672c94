"""grpcurl, knowing nothing but what server reflection tells it (no proto
files), can list, describe and call the server. The binary comes from
scripts/fetch-grpcurl.sh."""

import base64
import json
import subprocess

import numpy as np
import pytest

from server_process import REPO_ROOT

GRPCURL = REPO_ROOT / ".deps" / "grpcurl" / "grpcurl"

pytestmark = pytest.mark.skipif(not GRPCURL.is_file(), reason=f"{GRPCURL} is missing; run scripts/fetch-grpcurl.sh")


def run_grpcurl(url, *args, body=None):
    command = [str(GRPCURL), "-plaintext", "-max-time", "20"]
    if body is not None:
        command += ["-d", json.dumps(body)]
    command += [url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def grpcurl(url, *args, body=None):
    """Runs grpcurl against the server; returns its standard output."""
    finished = run_grpcurl(url, *args, body=body)
    assert finished.returncode == 0, f"grpcurl {args} failed ({finished.returncode}):\n{finished.stderr}"
    return finished.stdout


def test_list_services(grpc_url):
    services = grpcurl(grpc_url, "list").split()
    assert "inference.GRPCInferenceService" in services
    assert "grpc.health.v1.Health" in services
    # grpcurl 1.8 speaks the v1alpha reflection protocol.
    assert "grpc.reflection.v1alpha.ServerReflection" in services


def test_describe_inference_service(grpc_url):
    description = grpcurl(grpc_url, "describe", "inference.GRPCInferenceService")
    assert "service GRPCInferenceService {" in description
    assert "rpc ModelInfer ( .inference.ModelInferRequest ) returns ( .inference.ModelInferResponse );" in description
    streaming = (
        "rpc ModelStreamInfer ( stream .inference.ModelInferRequest )"
        " returns ( stream .inference.ModelStreamInferResponse );"
    )
    assert streaming in description


def test_describe_a_message(grpc_url):
    description = grpcurl(grpc_url, "describe", "inference.ModelInferRequest.InferInputTensor")
    assert "InferTensorContents contents = 5;" in description


def test_model_metadata_as_json(grpc_url):
    metadata = json.loads(grpcurl(grpc_url, "inference.GRPCInferenceService/ModelMetadata", body={"name": "simple"}))
    assert metadata["name"] == "simple"
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": ["-1", "16"]},
        {"name": "INPUT1", "datatype": "INT32", "shape": ["-1", "16"]},
    ]


def test_model_infer_with_typed_json_contents(grpc_url):
    a = list(range(16))
    b = [100 - 7 * n for n in range(16)]
    body = {
        "modelName": "simple",
        "id": "from-grpcurl",
        "inputs": [
            {"name": name, "datatype": "INT32", "shape": [1, 16], "contents": {"intContents": values}}
            for name, values in (("INPUT0", a), ("INPUT1", b))
        ],
    }
    response = json.loads(grpcurl(grpc_url, "inference.GRPCInferenceService/ModelInfer", body=body))
    assert response["id"] == "from-grpcurl"
    assert [output["name"] for output in response["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    sums, differences = (
        np.frombuffer(base64.b64decode(raw), dtype="<i4").tolist() for raw in response["rawOutputContents"]
    )
    assert sums == [x + y for x, y in zip(a, b, strict=True)]
    assert differences == [x - y for x, y in zip(a, b, strict=True)]


def test_health_check(grpc_url):
    assert json.loads(grpcurl(grpc_url, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}
    body = {"service": "inference.GRPCInferenceService"}
    named = json.loads(grpcurl(grpc_url, "grpc.health.v1.Health/Check", body=body))
    assert named == {"status": "SERVING"}


def test_health_check_of_any_other_service_reports_the_server(grpc_url):
    # As Triton does: a probe configured with any service name still works.
    body = {"service": "no.such.Service"}
    assert json.loads(grpcurl(grpc_url, "grpc.health.v1.Health/Check", body=body)) == {"status": "SERVING"}


def test_error_status_reaches_grpcurl(grpc_url):
    finished = run_grpcurl(grpc_url, "inference.GRPCInferenceService/ModelMetadata", body={"name": "no_such_model"})
    assert finished.returncode != 0
    assert "NotFound" in finished.stderr and "no_such_model" in finished.stderr, finished.stderr
