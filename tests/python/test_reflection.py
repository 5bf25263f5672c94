"""Server reflection in both protocol versions: grpcurl 1.8 speaks only
v1alpha (see test_grpcurl.py), newer tools only v1. No reflection client
library is needed: a list_services request is two bytes on the wire."""

import grpc
import pytest

# ServerReflectionRequest { list_services: "" } (field 7, length-delimited).
LIST_SERVICES = b"\x3a\x00"


def list_services(url, version):
    with grpc.insecure_channel(url) as channel:
        call = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo")
        (response,) = list(call(iter([LIST_SERVICES]), timeout=20))
    return response


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_the_services(grpc_url, version):
    response = list_services(grpc_url, version)
    # The names travel as plain strings inside ListServiceResponse.
    for service in (b"inference.GRPCInferenceService", b"grpc.health.v1.Health"):
        assert service in response, response
