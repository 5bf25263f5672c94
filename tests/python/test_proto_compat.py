"""Our protocol definition must match the one tritonclient was generated
from, field for field: any drift breaks clients silently (a renumbered field
decodes as garbage, a missing one as a default)."""

import glob
import os

import pytest
from google.protobuf import descriptor_pb2
from tritonclient.grpc import model_config_pb2, service_pb2

from server_process import REPO_ROOT

TRITONCLIENT_FILES = {module.DESCRIPTOR.name: module for module in (service_pb2, model_config_pb2)}


@pytest.fixture(scope="module")
def our_files():
    """The descriptor set build.rs writes, from the newest build."""
    candidates = glob.glob(str(REPO_ROOT / "target" / "*" / "build" / "tritonrs-*" / "out" / "descriptor_set.bin"))
    assert candidates, "no descriptor_set.bin under target/; run `cargo build` first"
    newest = max(candidates, key=os.path.getmtime)
    with open(newest, "rb") as file:
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(file.read())
    return {file.name: file for file in descriptor_set.file}


def tritonclient_file(name):
    proto = descriptor_pb2.FileDescriptorProto()
    TRITONCLIENT_FILES[name].DESCRIPTOR.CopyToProto(proto)
    return proto


def field_signature(field):
    return {
        "number": field.number,
        "type": descriptor_pb2.FieldDescriptorProto.Type.Name(field.type),
        "label": descriptor_pb2.FieldDescriptorProto.Label.Name(field.label),
        "type_name": field.type_name,
        "oneof_index": field.oneof_index if field.HasField("oneof_index") else None,
        "proto3_optional": field.proto3_optional,
    }


def enum_signature(enum):
    return {value.name: value.number for value in enum.value}


def collect(file):
    """Every message and enum of a file, nested ones included, by full name."""
    messages, enums = {}, {}

    def visit(message, scope):
        name = f"{scope}.{message.name}"
        messages[name] = {
            "fields": {field.name: field_signature(field) for field in message.field},
            "field_order": [field.name for field in message.field],
            "oneofs": [oneof.name for oneof in message.oneof_decl],
            "map_entry": message.options.map_entry,
        }
        for nested in message.nested_type:
            visit(nested, name)
        for enum in message.enum_type:
            enums[f"{name}.{enum.name}"] = enum_signature(enum)

    for message in file.message_type:
        visit(message, file.package)
    for enum in file.enum_type:
        enums[f"{file.package}.{enum.name}"] = enum_signature(enum)
    return messages, enums


def differences(ours, theirs):
    """Readable differences between two name-keyed dicts."""
    found = [f"missing from ours: {name}" for name in sorted(theirs.keys() - ours.keys())]
    found += [f"only in ours: {name}" for name in sorted(ours.keys() - theirs.keys())]
    for name in sorted(ours.keys() & theirs.keys()):
        if ours[name] != theirs[name]:
            found.append(f"{name}:\n  ours:         {ours[name]}\n  tritonclient: {theirs[name]}")
    return found


@pytest.mark.parametrize("file_name", sorted(TRITONCLIENT_FILES))
def test_file_header_matches(our_files, file_name):
    assert file_name in our_files, sorted(our_files)
    ours, theirs = our_files[file_name], tritonclient_file(file_name)
    assert ours.package == theirs.package == "inference"
    assert ours.syntax == theirs.syntax
    assert list(ours.dependency) == list(theirs.dependency)


@pytest.mark.parametrize("file_name", sorted(TRITONCLIENT_FILES))
def test_messages_match(our_files, file_name):
    our_messages, _ = collect(our_files[file_name])
    their_messages, _ = collect(tritonclient_file(file_name))
    assert len(their_messages) > 10
    problems = differences(our_messages, their_messages)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("file_name", sorted(TRITONCLIENT_FILES))
def test_enums_match(our_files, file_name):
    _, our_enums = collect(our_files[file_name])
    _, their_enums = collect(tritonclient_file(file_name))
    problems = differences(our_enums, their_enums)
    assert not problems, "\n".join(problems)


def test_model_config_enums_are_present(our_files):
    _, enums = collect(our_files["model_config.proto"])
    assert enums["inference.DataType"]["TYPE_BF16"] == 14
    assert enums["inference.ModelInstanceGroup.Kind"]["KIND_CPU"] == 2


def test_service_methods_match(our_files):
    def methods(file):
        (service,) = file.service
        assert service.name == "GRPCInferenceService"
        return {
            method.name: {
                "input_type": method.input_type,
                "output_type": method.output_type,
                "client_streaming": method.client_streaming,
                "server_streaming": method.server_streaming,
            }
            for method in service.method
        }

    ours = methods(our_files["grpc_service.proto"])
    theirs = methods(tritonclient_file("grpc_service.proto"))
    problems = differences(ours, theirs)
    assert not problems, "\n".join(problems)
    assert ours["ModelStreamInfer"]["client_streaming"] and ours["ModelStreamInfer"]["server_streaming"]
    assert [name for name in ours] == [name for name in theirs], "methods are in a different order"
