"""Triton's restricted API groups (--http-restricted-api,
--grpc-restricted-protocol): the categories named need their header, with
tritonclient over both protocols and with plain HTTP; the others stay open.
Each test starts its own server on the example repository."""

import pytest

from http_requests import expect_error_response, http_request, post
from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from protocols import expect_error, model_metadata, model_stats
from server_process import EXAMPLE_MODELS

ADMIN = ["model-repository,statistics:admin-key=s3cret", "health:probe-key=ok"]
GRPC_PREFIX = "triton-grpc-protocol-"


@pytest.fixture
def restricted_server(launch_server):
    flags = [f"--http-restricted-api={group}" for group in ADMIN]
    flags += [f"--grpc-restricted-protocol={group}" for group in ADMIN]
    # Readiness is restricted too, so the fixture cannot wait for it.
    server = launch_server(EXAMPLE_MODELS, extra=flags, wait="listening")
    server.wait_models_loaded()
    return server


def headers_for(protocol, **values):
    prefix = GRPC_PREFIX if protocol == "grpc" else ""
    return {prefix + key.replace("_", "-"): value for key, value in values.items()}


def test_restricted_categories_need_their_header(restricted_server, protocol):
    admin = headers_for(protocol, admin_key="s3cret")
    probe = headers_for(protocol, probe_key="ok")
    expecting = f"expecting header '{'triton-grpc-protocol-' if protocol == 'grpc' else ''}admin-key'"
    status = "UNAVAILABLE" if protocol == "grpc" else "FORBIDDEN"
    with restricted_server.client(protocol) as client:
        # Inference and metadata are open.
        wire = default_wire(client)
        a, b = simple_data(batch=2)
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire)), a, b)
        assert model_metadata(client, "simple")["name"] == "simple"
        # Statistics and the repository need the admin header, and only it.
        restricted = "This protocol is restricted" if protocol == "grpc" else "This API is restricted"
        expect_error(client, lambda: model_stats(client, "simple"), status, restricted, expecting)
        wrong = headers_for(protocol, admin_key="guess")
        expect_error(client, lambda: client.get_inference_statistics("simple", headers=wrong), status, expecting)
        expect_error(client, lambda: client.get_inference_statistics("simple", headers=probe), status, expecting)
        assert client.get_inference_statistics("simple", headers=admin)
        expect_error(client, lambda: client.get_model_repository_index(), status, expecting)
        assert client.get_model_repository_index(headers=admin)
        # Health has a group of its own. tritonclient's HTTP client reads a
        # refused readiness check as not ready; the gRPC one raises.
        if protocol == "grpc":
            expect_error(client, lambda: client.is_server_ready(), status, "probe-key")
        else:
            assert client.is_server_ready() is False
        assert client.is_server_ready(headers=probe)
        assert client.is_model_ready("simple", headers=probe)


def test_restricted_inference_needs_its_header(launch_server, protocol):
    flags = ["--http-restricted-api=inference:infer-key=go", "--grpc-restricted-protocol=inference:infer-key=go"]
    server = launch_server(EXAMPLE_MODELS, extra=flags)
    key = headers_for(protocol, infer_key="go")
    status = "UNAVAILABLE" if protocol == "grpc" else "FORBIDDEN"
    with server.client(protocol) as client:
        wire = default_wire(client)
        a, b = simple_data(batch=2)
        expect_error(client, lambda: wire.infer(client, "simple", simple_inputs(a, b, wire)), status, "infer-key")
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire), headers=key), a, b)


def test_plain_http_gets_403_with_the_header_named(restricted_server):
    url = restricted_server.http_url
    refused = post(url, "/v2/repository/models/simple/load", {})
    expect_error_response(refused, 403, "This API is restricted, expecting header 'admin-key'")
    loaded = post(url, "/v2/repository/models/simple/load", {}, headers={"Admin-Key": "s3cret"})
    assert loaded.status == 503, loaded.body  # open, and then refused by mode none
    expect_error_response(http_request(url, "GET", "/health"), 403, "'probe-key'")
    assert http_request(url, "GET", "/health", headers={"probe-key": "ok"}).status == 200
    assert http_request(url, "GET", "/v2/models/simple/config").status == 200
    # A route that does not exist is still a 404, restricted or not.
    assert http_request(url, "GET", "/v2/repository/nothing").status == 404


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--http-restricted-api=inference,models:k=v", "unknown category 'models'"),
        ("--grpc-restricted-protocol=inference", "expected <category>,...:<key>=<value>"),
    ],
)
def test_a_bad_restriction_stops_the_start(launch_server, flag, message):
    server = launch_server(EXAMPLE_MODELS, extra=[flag], wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert message in server.log


def test_a_category_in_two_groups_stops_the_start(launch_server):
    flags = ["--http-restricted-api=trace,logging:a=1", "--http-restricted-api=logging:b=2"]
    server = launch_server(EXAMPLE_MODELS, extra=flags, wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert "the category 'logging' is in more than one group" in server.log
