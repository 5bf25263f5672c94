"""How repositories load: a broken model with and without --exit-on-error,
--strict-model-config, and version policies, as seen over gRPC and HTTP.
Each test starts its own server on a temporary repository."""

import urllib.request

import numpy as np
import pytest

from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from protocols import as_numpy, expect_error, model_config, model_metadata, response_summary
from server_process import EXAMPLE_MODELS, copy_model

SIMPLE = EXAMPLE_MODELS / "simple"
SIMPLE_CONFIG = (SIMPLE / "config.pbtxt").read_text()


def simple_config(name, extra=""):
    """simple's config.pbtxt for a copy named `name`, plus `extra` text."""
    config = SIMPLE_CONFIG.replace('name: "simple"', f'name: "{name}"')
    assert config != SIMPLE_CONFIG, "simple's config.pbtxt no longer names the model as expected"
    return config + extra


def infer_simple(client, model="simple", version=""):
    wire = default_wire(client)
    a, b = simple_data(3, seed=len(model))
    return wire.infer(client, model, simple_inputs(a, b, wire), model_version=version), a, b


def assert_serves_simple(client, model="simple", version="", expected_version="1"):
    result, a, b = infer_simple(client, model, version)
    check_simple_result(result, a, b)
    assert response_summary(result)["model_version"] == expected_version


@pytest.fixture
def broken_repository(tmp_path):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    copy_model(SIMPLE, repository, name="broken", config='name: "broken"\nmax_batch_size: eight\n')
    return repository


def test_broken_model_does_not_stop_the_others(launch_server, protocol, broken_repository):
    server = launch_server(broken_repository, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        assert client.is_server_live()
        # Triton's readiness is strict: one failed model makes the server not ready.
        assert client.is_server_ready() is False
        assert client.is_model_ready("simple") is True
        assert client.is_model_ready("broken") is False
        assert_serves_simple(client)
        expect_error(client, lambda: model_metadata(client, "broken"), "UNAVAILABLE", "broken", "config.pbtxt")
        expect_error(client, lambda: infer_simple(client, "broken"), "UNAVAILABLE", "broken")
        assert_serves_simple(client)
    assert server.wait_for_line(r"\| broken .*UNAVAILABLE")


def test_without_strict_readiness_a_broken_model_leaves_the_server_ready(launch_server, protocol, broken_repository):
    flags = ["--exit-on-error=false", "--strict-readiness=false"]
    server = launch_server(broken_repository, extra=flags, wait="loaded")
    with server.client(protocol) as client:
        assert client.is_server_ready() is True
        assert client.is_model_ready("broken") is False
        assert_serves_simple(client)
    with urllib.request.urlopen(f"http://{server.http_url}/health", timeout=10) as response:
        assert response.status == 200


def test_broken_model_stops_the_server_by_default(launch_server, broken_repository):
    # No --exit-on-error flag: true by default, as in Triton.
    server = launch_server(broken_repository, wait="nothing")
    code = server.wait_exit(timeout=30)
    assert code != 0, f"exit code {code}; output:\n{server.log}"
    assert "exit-on-error" in server.log


@pytest.mark.parametrize("flag", ["--strict-model-config=true", "--disable-auto-complete-config"])
def test_strict_model_config_needs_a_config_file(launch_server, protocol, tmp_path, flag):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    copy_model(EXAMPLE_MODELS / "scale_fp16", repository)
    assert not (repository / "scale_fp16" / "config.pbtxt").exists()
    server = launch_server(repository, extra=[flag, "--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        assert client.is_model_ready("scale_fp16") is False
        assert client.is_model_ready("simple") is True
        expect_error(client, lambda: model_config(client, "scale_fp16"), "UNAVAILABLE", "scale_fp16", "input")
        assert_serves_simple(client)


def test_without_strict_model_config_the_same_repository_loads(launch_server, protocol, tmp_path):
    repository = tmp_path / "models"
    copy_model(EXAMPLE_MODELS / "scale_fp16", repository)
    server = launch_server(repository, extra=["--strict-model-config=false"])
    with server.client(protocol) as client:
        assert client.is_model_ready("scale_fp16") is True
        assert model_config(client, "scale_fp16")["max_batch_size"] == 4


# model name: (extra config text, the versions that must be ready)
VERSION_POLICIES = {
    "policy_default": ("", [3]),
    "policy_all": ("version_policy: { all: {} }\n", [1, 2, 3]),
    "policy_specific": ("version_policy: { specific: { versions: [ 1, 3 ] } }\n", [1, 3]),
    "policy_latest_two": ("version_policy: { latest: { num_versions: 2 } }\n", [2, 3]),
}


def test_version_policies(launch_server, protocol, tmp_path):
    repository = tmp_path / "models"
    for name, (policy, _) in VERSION_POLICIES.items():
        copy_model(SIMPLE, repository, name=name, versions=(1, 2, 3), config=simple_config(name, policy))
    server = launch_server(repository)
    with server.client(protocol) as client:
        for name, (_, ready_versions) in VERSION_POLICIES.items():
            readiness = {version: client.is_model_ready(name, str(version)) for version in (1, 2, 3)}
            assert readiness == {version: version in ready_versions for version in (1, 2, 3)}, name
            metadata = model_metadata(client, name)
            assert metadata["versions"] == [str(version) for version in ready_versions], name
            # Without a version the highest ready one answers.
            assert_serves_simple(client, name, expected_version="3")
            for version in ready_versions:
                assert_serves_simple(client, name, version=str(version), expected_version=str(version))
        expect_error(client, lambda: infer_simple(client, "policy_specific", "2"), "NOT_FOUND", "policy_specific", "2")


def test_configuration_name_must_match_its_directory(launch_server, protocol, tmp_path):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    copy_model(SIMPLE, repository, name="renamed")  # its config.pbtxt still says "simple"
    server = launch_server(repository, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        assert client.is_model_ready("renamed") is False
        expect_error(client, lambda: model_metadata(client, "renamed"), "UNAVAILABLE", "renamed")
        assert_serves_simple(client)


def test_model_in_two_repositories_is_refused(launch_server, protocol, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    copy_model(SIMPLE, first)
    copy_model(SIMPLE, second)
    copy_model(EXAMPLE_MODELS / "scale_fp16", second)
    server = launch_server(first, second, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        assert client.is_model_ready("simple") is False
        assert client.is_model_ready("scale_fp16") is True
        expect_error(
            client, lambda: model_metadata(client, "simple"), "UNAVAILABLE", "simple", "more than one repository"
        )
        wire = default_wire(client)
        half = np.ones((1, 4), np.float16)
        result = wire.infer(client, "scale_fp16", [wire.input("INPUT", half)])
        np.testing.assert_array_equal(as_numpy(result, "OUTPUT"), half / 2)
