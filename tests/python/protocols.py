"""One test, both protocols: what differs between `tritonclient.grpc` and
`tritonclient.http`, behind a few small functions.

A `Wire` says how an inference request travels: over gRPC, or over HTTP
with its tensors as binary data or as JSON, compressed or not. Tests that
take the `wire` fixture run once per entry of `WIRES` (see conftest.py);
tests that take `client` run once per protocol."""

import dataclasses
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpclient_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

PROTOCOLS = ("grpc", "http")
RPC_TIMEOUT_S = 20

# How each client reports the server's error classes: tritonclient.grpc
# gives the gRPC status code, tritonclient.http the HTTP status as text.
STATUS = {
    "INVALID_ARGUMENT": {"grpc": "StatusCode.INVALID_ARGUMENT", "http": "400"},
    "NOT_FOUND": {"grpc": "StatusCode.NOT_FOUND", "http": "404"},
    "ALREADY_EXISTS": {"grpc": "StatusCode.ALREADY_EXISTS", "http": "409"},
    "UNAVAILABLE": {"grpc": "StatusCode.UNAVAILABLE", "http": "503"},
    "UNIMPLEMENTED": {"grpc": "StatusCode.UNIMPLEMENTED", "http": "501"},
    # HTTP only: a restricted API without its header.
    "FORBIDDEN": {"http": "403"},
}


def module(protocol):
    return {"grpc": grpcclient, "http": httpclient}[protocol]


def aio_module(protocol):
    return {"grpc": grpcclient_aio, "http": httpclient_aio}[protocol]


def protocol_of(client):
    """"grpc" or "http", from the client's class (the aio clients included)."""
    if isinstance(client, (grpcclient.InferenceServerClient, grpcclient_aio.InferenceServerClient)):
        return "grpc"
    if isinstance(client, (httpclient.InferenceServerClient, httpclient_aio.InferenceServerClient)):
        return "http"
    raise TypeError(f"not a tritonclient client: {client!r}")


def connect(protocol, url, **options):
    """A synchronous client. The HTTP client gets bounded connect and
    network timeouts: it has no per-call deadline like gRPC's client_timeout."""
    if protocol == "grpc":
        return grpcclient.InferenceServerClient(url=url, **options)
    options = {"connection_timeout": 5, "network_timeout": RPC_TIMEOUT_S, **options}
    return httpclient.InferenceServerClient(url=url, **options)


@dataclasses.dataclass(frozen=True)
class Wire:
    """How inference requests travel. Over HTTP, tensors go as binary data
    after the JSON or as JSON `data`, inputs and outputs each their own way,
    and either direction may be compressed."""

    protocol: str
    binary_inputs: bool = True
    binary_outputs: bool = True
    request_compression: str | None = None
    response_compression: str | None = None

    @property
    def id(self):
        if self.protocol == "grpc":
            return "grpc"
        parts = [
            "http",
            "bin-in" if self.binary_inputs else "json-in",
            "bin-out" if self.binary_outputs else "json-out",
        ]
        if self.request_compression:
            parts.append(f"{self.request_compression}-request")
        if self.response_compression:
            parts.append(f"{self.response_compression}-response")
        return "-".join(parts)

    @property
    def module(self):
        return module(self.protocol)

    @property
    def json_outputs(self):
        return self.protocol == "http" and not self.binary_outputs

    @property
    def json_inputs(self):
        return self.protocol == "http" and not self.binary_inputs

    def input(self, name, data, datatype=None):
        """An InferInput holding `data`; `datatype` defaults to the one
        tritonclient derives from the numpy type."""
        datatype = datatype or np_to_datatype(data)
        tensor = self.module.InferInput(name, list(data.shape), datatype)
        if self.protocol == "grpc":
            return tensor.set_data_from_numpy(data)
        # tritonclient.http refuses to put BF16 into JSON ("BF16 inputs must
        # be sent as binary data"), so BF16 inputs are always binary.
        return tensor.set_data_from_numpy(data, binary_data=self.binary_inputs or datatype == "BF16")

    def outputs(self, *names, **options):
        """InferRequestedOutputs for `names`, each binary or JSON as this wire asks."""
        if self.protocol == "grpc":
            return [grpcclient.InferRequestedOutput(name, **options) for name in names]
        return [httpclient.InferRequestedOutput(name, binary_data=self.binary_outputs, **options) for name in names]

    def _arguments(self, client, model, outputs, kwargs):
        if outputs is None and self.json_outputs:
            # Without named outputs tritonclient.http asks for every output
            # as binary data, so JSON outputs must be named.
            outputs = self.outputs(*output_names(client, model))
        if self.protocol == "grpc":
            return {"outputs": outputs, "client_timeout": RPC_TIMEOUT_S, **kwargs}
        # tritonclient.http has no per-call deadline: its client's network
        # timeout bounds each call instead.
        kwargs.pop("client_timeout", None)
        return {
            "outputs": outputs,
            "request_compression_algorithm": self.request_compression,
            "response_compression_algorithm": self.response_compression,
            **kwargs,
        }

    def infer(self, client, model, inputs, outputs=None, **kwargs):
        """client.infer with this wire's settings; `outputs` are requested
        outputs (see `outputs`), or None for every output."""
        return client.infer(model, inputs, **self._arguments(client, model, outputs, kwargs))

    def start_infer(self, client, model, inputs, outputs=None, **kwargs):
        """client.async_infer; returns `wait(timeout)`, which gives the result
        or raises the error. gRPC answers through a callback, HTTP through
        an InferAsyncRequest."""
        arguments = self._arguments(client, model, outputs, kwargs)
        if self.protocol == "http":
            handle = client.async_infer(model, inputs, **arguments)
            return lambda timeout=RPC_TIMEOUT_S: handle.get_result(timeout=timeout)
        answers = queue.Queue()
        client.async_infer(model, inputs, callback=lambda result, error: answers.put((result, error)), **arguments)

        def wait(timeout=RPC_TIMEOUT_S):
            result, error = answers.get(timeout=timeout)
            if error is not None:
                raise error
            return result

        return wait


GRPC = Wire("grpc")
# tritonclient.http's defaults: binary tensors, no compression.
HTTP = Wire("http")
HTTP_JSON = Wire("http", binary_inputs=False, binary_outputs=False)
HTTP_GZIP = Wire(
    "http", binary_inputs=True, binary_outputs=False, request_compression="gzip", response_compression="gzip"
)
HTTP_DEFLATE = Wire(
    "http", binary_inputs=False, binary_outputs=True, request_compression="deflate", response_compression="deflate"
)
# Between them: every combination of binary and JSON inputs and outputs, and
# each compression algorithm in each direction.
WIRES = (GRPC, HTTP, HTTP_JSON, HTTP_GZIP, HTTP_DEFLATE)


def np_to_datatype(data):
    return np_to_triton_dtype(data.dtype)


def as_numpy(result, name):
    """An output as numpy. BYTES outputs sent as JSON arrive as str; they
    are turned back into bytes, as binary BYTES outputs are."""
    array = result.as_numpy(name)
    if isinstance(result, httpclient.InferResult) and array is not None:
        output = result.get_output(name)
        if output["datatype"] == "BYTES" and "data" in output:
            array = np.array([element.encode() for element in array.flat], dtype=np.object_).reshape(array.shape)
    return array


def output_was_json(result, name):
    """Whether an HTTP output came back as JSON `data` (False over gRPC)."""
    if not isinstance(result, httpclient.InferResult):
        return False
    return "data" in result.get_output(name)


def response_summary(result):
    """What both protocols' responses say about themselves: model, version,
    id and each output's (name, datatype, shape), in order."""
    if isinstance(result, httpclient.InferResult):
        response = result.get_response()
        outputs = [(o["name"], o["datatype"], list(o["shape"])) for o in response["outputs"]]
        return {
            "model_name": response["model_name"],
            "model_version": response["model_version"],
            "id": response.get("id", ""),
            "outputs": outputs,
        }
    response = result.get_response()
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "outputs": [(o.name, o.datatype, list(o.shape)) for o in response.outputs],
    }


def _numeric_shapes(value):
    """protobuf's JSON mapping writes int64 values, such as shapes and dims,
    as strings; the HTTP API writes numbers. Both become numbers here."""
    if isinstance(value, dict):
        return {
            key: [int(dim) for dim in item] if key in ("shape", "dims") else _numeric_shapes(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_numeric_shapes(item) for item in value]
    return value


def server_metadata(client):
    if protocol_of(client) == "grpc":
        return client.get_server_metadata(as_json=True)
    return client.get_server_metadata()


def model_metadata(client, model, version=""):
    """Model metadata as a dict, shapes as numbers."""
    if protocol_of(client) == "grpc":
        return _numeric_shapes(client.get_model_metadata(model, version, as_json=True))
    return client.get_model_metadata(model, version)


def model_config(client, model, version=""):
    """The model configuration as a dict with the proto field names, dims as
    numbers. tritonclient.grpc's JSON leaves out fields at their default
    value; the HTTP API prints every field."""
    if protocol_of(client) == "grpc":
        return _numeric_shapes(client.get_model_config(model, version, as_json=True)["config"])
    return client.get_model_config(model, version)


def model_stats(client, model, version=""):
    """The statistics of one model version as a dict, over either protocol."""
    if protocol_of(client) == "grpc":
        stats = client.get_inference_statistics(model, version, as_json=True)
    else:
        stats = client.get_inference_statistics(model, version)
    (model_stats,) = stats["model_stats"]
    return model_stats


def count(stats, *path):
    """A counter from a statistics dict; protobuf's JSON writes 64-bit
    numbers as strings and leaves zeros out, so both forms are read here."""
    value = stats
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return int(value) if value is not None else 0


def output_names(client, model):
    return [output["name"] for output in model_metadata(client, model)["outputs"]]


def expect_error(client_or_protocol, call, status, *fragments):
    """Runs `call`, which must fail with `status` (a key of STATUS, given as
    each protocol reports it) and a message containing every fragment;
    returns the message."""
    protocol = client_or_protocol if isinstance(client_or_protocol, str) else protocol_of(client_or_protocol)
    with pytest.raises(InferenceServerException) as caught:
        call()
    error = caught.value
    assert error.status() == STATUS[status][protocol], f"{error.status()}: {error.message()}"
    message = error.message()
    for fragment in fragments:
        assert fragment in message, f"expected {fragment!r} in {message!r}"
    return message
