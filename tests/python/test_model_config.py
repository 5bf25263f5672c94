"""ModelConfig answers shaped like Triton's: written configurations are
completed with Triton's defaults, and models without a config.pbtxt get one
derived from the ONNX file."""

from tritonclient.grpc import model_config_pb2 as mc

from model_requests import expect_rpc_error


def tensors(entries):
    return [(entry.name, mc.DataType.Name(entry.data_type), list(entry.dims)) for entry in entries]


def test_simple_config_is_completed_with_triton_defaults(client):
    config = client.get_model_config("simple").config
    assert config.name == "simple"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 8
    assert config.default_model_filename == "model.onnx"
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.version_policy.latest.num_versions == 1
    assert len(config.instance_group) == 1
    group = config.instance_group[0]
    assert group.count == 2
    assert group.kind == mc.ModelInstanceGroup.KIND_CPU
    assert tensors(config.input) == [("INPUT0", "TYPE_INT32", [16]), ("INPUT1", "TYPE_INT32", [16])]
    assert tensors(config.output) == [("OUTPUT0", "TYPE_INT32", [16]), ("OUTPUT1", "TYPE_INT32", [16])]


def test_config_as_json_uses_proto_field_names(client):
    config = client.get_model_config("simple", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["input"][0]["data_type"] == "TYPE_INT32"


def test_batchable_model_without_config_is_autocompleted(client):
    config = client.get_model_config("scale_fp16").config
    assert config.name == "scale_fp16"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    # Triton's default-max-batch-size for a model whose first dims are dynamic.
    assert config.max_batch_size == 4
    assert tensors(config.input) == [("INPUT", "TYPE_FP16", [4])]
    assert tensors(config.output) == [("OUTPUT", "TYPE_FP16", [4])]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU


def test_unbatchable_model_without_config_is_autocompleted(client):
    config = client.get_model_config("busy_loop").config
    assert config.max_batch_size == 0
    assert tensors(config.input) == [("ITERATIONS", "TYPE_INT64", [1])]
    assert tensors(config.output) == [("COUNT", "TYPE_INT64", [1])]
    assert config.version_policy.latest.num_versions == 1


def test_identity_models_have_a_variable_dimension(client):
    config = client.get_model_config("identity_bf16").config
    assert config.max_batch_size == 4
    assert tensors(config.input) == [("INPUT0", "TYPE_BF16", [-1])]
    assert tensors(config.output) == [("OUTPUT0", "TYPE_BF16", [-1])]
    config = client.get_model_config("identity_bytes").config
    assert tensors(config.input) == [("INPUT0", "TYPE_STRING", [-1])]


def test_unknown_model_config_is_not_found(client):
    expect_rpc_error(lambda: client.get_model_config("no_such_model"), "NOT_FOUND", "no_such_model")
