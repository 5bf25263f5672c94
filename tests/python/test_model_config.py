"""Model configurations shaped like Triton's, over gRPC and HTTP: written
configurations are completed with Triton's defaults, and models without a
config.pbtxt get one derived from the ONNX file."""

from tritonclient.grpc import model_config_pb2 as mc

from protocols import expect_error, model_config
from server_process import EXAMPLE_MODELS, copy_model

SIMPLE = EXAMPLE_MODELS / "simple"


def tensors(entries):
    return [(entry["name"], entry["data_type"], entry["dims"]) for entry in entries]


def test_simple_config_is_completed_with_triton_defaults(client):
    config = model_config(client, "simple")
    assert config["name"] == "simple"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 8
    assert config["default_model_filename"] == "model.onnx"
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    (group,) = config["instance_group"]
    assert group["count"] == 2
    assert group["kind"] == "KIND_CPU"
    assert tensors(config["input"]) == [("INPUT0", "TYPE_INT32", [16]), ("INPUT1", "TYPE_INT32", [16])]
    assert tensors(config["output"]) == [("OUTPUT0", "TYPE_INT32", [16]), ("OUTPUT1", "TYPE_INT32", [16])]


def test_grpc_config_message(grpc_client):
    # The typed message, beside the JSON both protocols give.
    config = grpc_client.get_model_config("simple").config
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert list(config.input[0].dims) == [16]


def test_http_config_prints_every_field(http_client):
    # Triton's HTTP API prints fields at their default value too, and int64
    # values such as dims as JSON numbers.
    config = http_client.get_model_config("simple")
    assert config["input"][0]["dims"] == [16]
    assert config["input"][0]["is_shape_tensor"] is False
    assert config["output"][0]["label_filename"] == ""
    assert config["instance_group"][0]["gpus"] == []


def test_config_of_an_explicit_version(client):
    assert model_config(client, "simple", "1")["name"] == "simple"
    expect_error(client, lambda: model_config(client, "simple", "7"), "NOT_FOUND", "simple", "7")


def test_batchable_model_without_config_is_autocompleted(client):
    config = model_config(client, "scale_fp16")
    assert config["name"] == "scale_fp16"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    # Triton's default-max-batch-size for a model whose first dims are dynamic.
    assert config["max_batch_size"] == 4
    assert tensors(config["input"]) == [("INPUT", "TYPE_FP16", [4])]
    assert tensors(config["output"]) == [("OUTPUT", "TYPE_FP16", [4])]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"


def test_unbatchable_model_without_config_is_autocompleted(client):
    config = model_config(client, "busy_loop")
    # gRPC's JSON leaves out fields at their default value, such as a
    # max_batch_size of 0.
    assert config.get("max_batch_size", 0) == 0
    assert tensors(config["input"]) == [("ITERATIONS", "TYPE_INT64", [1])]
    assert tensors(config["output"]) == [("COUNT", "TYPE_INT64", [1])]
    assert config["version_policy"]["latest"]["num_versions"] == 1


def test_identity_models_have_a_variable_dimension(client):
    config = model_config(client, "identity_bf16")
    assert config["max_batch_size"] == 4
    assert tensors(config["input"]) == [("INPUT0", "TYPE_BF16", [-1])]
    assert tensors(config["output"]) == [("OUTPUT0", "TYPE_BF16", [-1])]
    config = model_config(client, "identity_bytes")
    assert tensors(config["input"]) == [("INPUT0", "TYPE_STRING", [-1])]


def test_unknown_model_config_is_not_found(client):
    expect_error(client, lambda: model_config(client, "no_such_model"), "NOT_FOUND", "no_such_model")


def test_a_custom_configuration_name_picks_configs_files(launch_server, tmp_path, protocol):
    # Triton's --model-config-name: configs/<name>.pbtxt where a model has
    # one, its config.pbtxt elsewhere.
    repository = tmp_path / "models"
    simple_text = (SIMPLE / "config.pbtxt").read_text()
    custom = copy_model(SIMPLE, repository)
    (custom / "configs").mkdir()
    (custom / "configs" / "h100.pbtxt").write_text(simple_text.replace("max_batch_size: 8", "max_batch_size: 4"))
    (custom / "configs" / "v100.pbtxt").write_text(simple_text.replace("max_batch_size: 8", "max_batch_size: 2"))
    copy_model(SIMPLE, repository, name="plain", config=simple_text.replace('name: "simple"', 'name: "plain"'))
    server = launch_server(repository, extra=["--model-config-name=h100"])
    with server.client(protocol) as client:
        assert model_config(client, "simple")["max_batch_size"] == 4
        assert model_config(client, "plain")["max_batch_size"] == 8


def test_a_configuration_name_with_spaces_is_refused(launch_server):
    server = launch_server(EXAMPLE_MODELS, extra=["--model-config-name=h 100"], wait="nothing")
    assert server.wait_exit(30) != 0
    assert "is not a configuration name" in server.log
