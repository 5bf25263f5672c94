"""Triton's checksum repository agent: a configuration's
`model_repository_agents` gives the MD5 digest each named file of the
model must have; the model loads only when they all match, and says which
file differs otherwise. Checked at start and on a load request."""

import hashlib

from model_requests import assert_simple_works, check_simple_result, default_wire, simple_data, simple_inputs
from protocols import expect_error, model_metadata
from server_process import EXAMPLE_MODELS, copy_model

SIMPLE = EXAMPLE_MODELS / "simple"
MODEL_FILE_MD5 = hashlib.md5((SIMPLE / "1" / "model.onnx").read_bytes()).hexdigest()


def with_checksum(digest, agent="checksum", name="simple"):
    """simple's configuration, as model `name`, with a checksum of its model file."""
    return (SIMPLE / "config.pbtxt").read_text().replace('"simple"', f'"{name}"') + (
        f'model_repository_agents {{ agents [ {{ name: "{agent}" '
        f'parameters [ {{ key: "MD5:1/model.onnx" value: "{digest}" }} ] }} ] }}\n'
    )


def test_a_model_loads_only_when_its_files_match_their_checksums(launch_server, protocol, tmp_path):
    copy_model(SIMPLE, tmp_path, config=with_checksum(MODEL_FILE_MD5))
    copy_model(SIMPLE, tmp_path, "tampered", config=with_checksum("0" * 32, name="tampered"))
    copy_model(SIMPLE, tmp_path, "unknown_agent", config=with_checksum(MODEL_FILE_MD5, agent="decrypt", name="unknown_agent"))
    server = launch_server(tmp_path, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        wire = default_wire(client)
        a, b = simple_data(seed=3)
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire)), a, b)
        expect_error(
            client,
            lambda: model_metadata(client, "tampered"),
            "UNAVAILABLE",
            f"Mismatched MD5 hash for file 1/model.onnx, expect: {'0' * 32}, got: {MODEL_FILE_MD5}",
        )
        expect_error(
            client,
            lambda: model_metadata(client, "unknown_agent"),
            "UNAVAILABLE",
            "repository agent 'decrypt' is not available",
        )


def test_a_load_request_checks_the_files_again(launch_server, protocol, tmp_path):
    copy_model(SIMPLE, tmp_path, config=with_checksum(MODEL_FILE_MD5))
    server = launch_server(tmp_path, extra=["--model-control-mode=explicit", "--load-model=simple"])
    with server.client(protocol) as client:
        assert_simple_works(client)
        # The model file changes on disk: the reload refuses it, and the
        # version loaded before keeps serving.
        model_file = tmp_path / "simple" / "1" / "model.onnx"
        model_file.write_bytes(model_file.read_bytes() + b"\0")
        expect_error(client, lambda: client.load_model("simple"), "INVALID_ARGUMENT", "Mismatched MD5 hash")
        assert_simple_works(client)
