"""Health, readiness and metadata as tritonclient reads them, over gRPC
and HTTP."""

import pytest

from http_requests import expect_error_response, http_request
from protocols import expect_error, model_metadata, server_metadata

ALL_MODELS = [
    "simple",
    "simple_string",
    "scale_fp16",
    "busy_loop",
    "classifier",
    *(
        f"identity_{name}"
        for name in (
            "bool",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "int8",
            "int16",
            "int32",
            "int64",
            "fp16",
            "bf16",
            "fp32",
            "fp64",
            "bytes",
        )
    ),
]


def test_server_is_live_and_ready(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True


@pytest.mark.parametrize("model", ALL_MODELS)
def test_loaded_models_are_ready(client, model):
    assert client.is_model_ready(model) is True
    assert client.is_model_ready(model, "1") is True


def test_unknown_models_and_versions_are_not_ready(client):
    assert client.is_model_ready("no_such_model") is False
    assert client.is_model_ready("simple", "2") is False


def test_readiness_of_a_malformed_version_is_an_invalid_argument(client, protocol, url):
    if protocol == "grpc":
        expect_error(client, lambda: client.is_model_ready("simple", "abc"), "INVALID_ARGUMENT", "simple", "'abc'")
        return
    # tritonclient.http reads any answer but 200 as "not ready" and drops
    # the message; the server's answer itself says what is wrong.
    assert client.is_model_ready("simple", "abc") is False
    response = http_request(url, "GET", "/v2/models/simple/versions/abc/ready")
    expect_error_response(response, 400, "simple", "'abc'")


def test_server_metadata(client):
    metadata = server_metadata(client)
    assert metadata["name"] == "triton"
    assert metadata["version"]
    extensions = metadata["extensions"]
    expected = {
        "classification",
        "sequence",
        "model_repository",
        "model_repository(unload_dependents)",
        "model_configuration",
        "binary_tensor_data",
        "statistics",
        "schedule_policy",
        "logging",
        "trace",
    }
    assert expected <= set(extensions)
    # Clients decide what to call from this list, so it must not promise
    # the shared-memory extensions, which the shared server leaves off
    # (--allow-client-shm=false).
    not_offered = {"system_shared_memory", "cuda_shared_memory"}
    assert not not_offered & set(extensions), extensions


def test_simple_metadata(client):
    metadata = model_metadata(client, "simple")
    assert metadata["name"] == "simple"
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    assert metadata["outputs"] == [
        {"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "OUTPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]


def test_grpc_metadata_shapes_are_int64(grpc_client):
    # int64 fields are strings in protobuf's JSON mapping: the gRPC message
    # really carries int64 shapes.
    metadata = grpc_client.get_model_metadata("simple", as_json=True)
    assert metadata["inputs"][0]["shape"] == ["-1", "16"]


def test_metadata_of_an_explicit_version(client):
    metadata = model_metadata(client, "simple", "1")
    assert metadata["name"] == "simple"
    assert metadata["versions"] == ["1"]
    assert [tensor["name"] for tensor in metadata["inputs"]] == ["INPUT0", "INPUT1"]


def test_autocompleted_metadata_without_batching(client):
    metadata = model_metadata(client, "busy_loop")
    assert metadata["inputs"] == [{"name": "ITERATIONS", "datatype": "INT64", "shape": [1]}]
    assert metadata["outputs"] == [{"name": "COUNT", "datatype": "INT64", "shape": [1]}]


def test_unknown_model_metadata_is_not_found(client):
    expect_error(client, lambda: model_metadata(client, "no_such_model"), "NOT_FOUND", "no_such_model")


def test_unknown_version_metadata_is_not_found(client):
    expect_error(client, lambda: model_metadata(client, "simple", "7"), "NOT_FOUND", "simple", "7")
