"""Triton's trace extension and trace files, through tritonclient over gRPC
and HTTP: the settings the flags give and their changes (global and per
model), the trace file's entries and their order, sampling by rate and
count, the TENSORS level, numbered files, and the changes that are
refused."""

import http.server
import json
import ssl
import threading
import time

import numpy as np
import pytest

from http_requests import expect_error_response, post
from model_requests import default_wire, simple_data, simple_inputs
from protocols import expect_error, protocol_of
from server_process import EXAMPLE_MODELS, copy_model
from test_grpc_tls import pki  # noqa: F401 (a fixture)

# Triton's order of a request's moments, after the frontend's first ones.
CORE_MOMENTS = [
    "REQUEST_START",
    "QUEUE_START",
    "COMPUTE_START",
    "COMPUTE_INPUT_END",
    "COMPUTE_OUTPUT_START",
    "COMPUTE_END",
    "REQUEST_END",
]
FRONTEND_MOMENTS = {
    "http": (["HTTP_RECV_START", "HTTP_RECV_END"], ["HTTP_SEND_START", "HTTP_SEND_END"]),
    "grpc": (["GRPC_WAITREAD_START", "GRPC_WAITREAD_END"], ["GRPC_SEND_START", "GRPC_SEND_END"]),
}


def tracing_server(launch_server, trace_file, *settings):
    extra = [f"--trace-config=triton,file={trace_file}"] + [f"--trace-config={setting}" for setting in settings]
    return launch_server(EXAMPLE_MODELS, extra=extra)


def trace_settings(client, model=""):
    """The settings as {name: [values]}, whichever protocol answered."""
    if protocol_of(client) == "grpc":
        answer = client.get_trace_settings(model_name=model, as_json=True)
        return {name: setting.get("value", []) for name, setting in answer["settings"].items()}
    return normalise_http(client.get_trace_settings(model_name=model or None))


def update(client, model="", **settings):
    if protocol_of(client) == "grpc":
        answer = client.update_trace_settings(model_name=model, settings=settings, as_json=True)
        return {name: setting.get("value", []) for name, setting in answer["settings"].items()}
    return normalise_http(client.update_trace_settings(model_name=model or None, settings=settings))


def normalise_http(answer):
    return {name: value if isinstance(value, list) else [value] for name, value in answer.items()}


def entries_in(path):
    """The entries of a trace file, or none while it is missing or being
    written at this very moment."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def read_traces(path, expected, timeout=10):
    """The traces in `path` by id, once there are `expected` of them (a
    trace is written as its response goes out, so it may trail the answer
    by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        traces = {}
        for entry in entries_in(path):
            trace = traces.setdefault(entry["id"], {"timestamps": {}, "tensors": []})
            if "model_name" in entry:
                trace["header"] = entry
            for stamp in entry.get("timestamps", []):
                trace["timestamps"][stamp["name"]] = stamp["ns"]
            if "tensor" in entry:
                trace["tensors"].append((entry["activity"], entry["tensor"]))
        if len(traces) >= expected or time.monotonic() > deadline:
            assert len(traces) == expected, f"{len(traces)} traces in {path}, expected {expected}"
            return traces
        time.sleep(0.05)


def trace_ids_in(path, expected, timeout=10):
    """The trace ids in a numbered file, once it holds `expected` traces."""
    deadline = time.monotonic() + timeout
    while len(ids := {entry["id"] for entry in entries_in(path)}) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return ids


def infer_simple(client, count, request_id="traced"):
    wire = default_wire(client)
    a, b = simple_data()
    for index in range(count):
        wire.infer(client, "simple", simple_inputs(a, b, wire), request_id=f"{request_id}-{index}")
    return a, b


def test_settings_follow_the_flags_and_change_globally_and_per_model(launch_server, tmp_path, protocol):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=1")
    with server.client(protocol) as client:
        expected = {
            "trace_level": ["TIMESTAMPS"],
            "trace_rate": ["1"],
            "trace_count": ["-1"],
            "log_frequency": ["0"],
            "trace_file": [str(trace_file)],
            "trace_mode": ["triton"],
        }
        assert trace_settings(client) == expected
        assert trace_settings(client, "simple") == expected

        model = update(client, "simple", trace_rate="3", trace_level=["TIMESTAMPS", "TENSORS"])
        assert model == {**expected, "trace_rate": ["3"], "trace_level": ["TIMESTAMPS", "TENSORS"]}
        assert trace_settings(client) == expected
        # A global change reaches only what the model does not set itself.
        assert update(client, trace_count="50", trace_rate="10")["trace_rate"] == ["10"]
        model = trace_settings(client, "simple")
        assert (model["trace_rate"], model["trace_count"]) == (["3"], ["50"])
        # Cleared, the model follows the global settings again; cleared
        # globally, the command line's value comes back.
        assert update(client, "simple", trace_rate=None, trace_level=None)["trace_rate"] == ["10"]
        assert update(client, trace_rate=None, trace_count=None) == expected


def test_every_moment_of_a_traced_request_is_written_in_order(launch_server, tmp_path, protocol):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=1")
    with server.client(protocol) as client:
        infer_simple(client, 3)
    traces = read_traces(trace_file, 3)
    received, sent = FRONTEND_MOMENTS[protocol]
    assert sorted(trace["header"]["request_id"] for trace in traces.values()) == [f"traced-{i}" for i in range(3)]
    for trace in traces.values():
        assert trace["header"]["model_name"] == "simple"
        assert trace["header"]["model_version"] == 1
        stamps = trace["timestamps"]
        order = received + CORE_MOMENTS + sent
        assert set(order) <= set(stamps), sorted(stamps)
        times = [stamps[name] for name in order]
        assert times == sorted(times), list(zip(order, times))
        # A request to a tiny model takes well under a second end to end.
        assert 0 < stamps[sent[-1]] - stamps[received[0]] < 1e9


def test_the_predict_route_traces_kserve_v2_requests(launch_server, tmp_path):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=1")
    a, b = simple_data()
    body = {
        "id": "predicted",
        "inputs": [
            {"name": name, "datatype": "INT32", "shape": [1, 16], "data": values.flatten().tolist()}
            for name, values in (("INPUT0", a), ("INPUT1", b))
        ],
    }
    answer = post(server.http_url, "/predict", body, headers={"model_name": "simple"})
    assert answer.status == 200, answer.body
    (trace,) = read_traces(trace_file, 1).values()
    assert (trace["header"]["model_name"], trace["header"]["request_id"]) == ("simple", "predicted")
    order = FRONTEND_MOMENTS["http"][0] + CORE_MOMENTS + FRONTEND_MOMENTS["http"][1]
    times = [trace["timestamps"][name] for name in order]
    assert times == sorted(times), list(zip(order, times))
    # The instances form runs a request per chunk of rows: not traced.
    rows = post(server.http_url, "/predict", {"instances": [[1.0, 2.0, 3.0, 4.0]]}, headers={"model_name": "scale_fp16"})
    assert rows.status == 200, rows.body
    time.sleep(0.3)
    assert len(read_traces(trace_file, 1)) == 1


def test_rate_and_count_choose_the_requests(launch_server, tmp_path, protocol):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=2", "count=3")
    with server.client(protocol) as client:
        infer_simple(client, 10)
        assert trace_settings(client)["trace_count"] == ["0"]
    traces = read_traces(trace_file, 3)
    # Every second request, until three were traced.
    assert sorted(trace["header"]["request_id"] for trace in traces.values()) == ["traced-1", "traced-3", "traced-5"]


def test_the_tensors_level_writes_inputs_and_outputs(launch_server, tmp_path, protocol):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TENSORS", "rate=1")
    with server.client(protocol) as client:
        a, b = infer_simple(client, 1)
    (trace,) = read_traces(trace_file, 1).values()
    assert trace["timestamps"] == {}
    tensors = {(activity, tensor["name"]): tensor for activity, tensor in trace["tensors"]}
    assert set(tensors) == {
        ("TENSOR_QUEUE_INPUT", "INPUT0"),
        ("TENSOR_QUEUE_INPUT", "INPUT1"),
        ("TENSOR_BACKEND_OUTPUT", "OUTPUT0"),
        ("TENSOR_BACKEND_OUTPUT", "OUTPUT1"),
    }

    def values(key):
        return np.array([int(value) for value in tensors[key]["data"].split(",")], dtype=np.int32)

    np.testing.assert_array_equal(values(("TENSOR_QUEUE_INPUT", "INPUT0")), a[0])
    np.testing.assert_array_equal(values(("TENSOR_BACKEND_OUTPUT", "OUTPUT0")), (a + b)[0])
    assert tensors[("TENSOR_BACKEND_OUTPUT", "OUTPUT1")]["shape"] == "1,16"
    assert tensors[("TENSOR_BACKEND_OUTPUT", "OUTPUT1")]["dtype"] == "INT32"


def test_a_log_frequency_writes_numbered_files(launch_server, tmp_path):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=1", "triton,log-frequency=2")
    with server.client("grpc") as client:
        infer_simple(client, 5)
        for path in (tmp_path / "trace.json.0", tmp_path / "trace.json.1"):
            assert len(trace_ids_in(path, 2)) == 2, path
    # The fifth waits for two more, or for the server to stop.
    assert not (tmp_path / "trace.json.2").exists()
    assert server.stop() == 0
    assert len(trace_ids_in(tmp_path / "trace.json.2", 1)) == 1
    assert not trace_file.exists()


def test_streamed_requests_are_traced(launch_server, tmp_path):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=1")
    answers = []
    with server.client("grpc") as client:
        a, b = simple_data()
        wire = default_wire(client)
        client.start_stream(callback=lambda result, error: answers.append((result, error)))
        for index in range(2):
            client.async_stream_infer("simple", simple_inputs(a, b, wire), request_id=f"streamed-{index}")
        client.stop_stream()
    assert [error for _, error in answers] == [None, None]
    traces = read_traces(trace_file, 2)
    received, sent = FRONTEND_MOMENTS["grpc"]
    for trace in traces.values():
        assert trace["header"]["request_id"].startswith("streamed-")
        assert set(received + CORE_MOMENTS + sent) <= set(trace["timestamps"])


def test_refused_changes_say_why(launch_server, tmp_path, protocol):
    server = tracing_server(launch_server, tmp_path / "trace.json")
    with server.client(protocol) as client:
        expect_error(client, lambda: update(client, trace_file="/tmp/elsewhere.json"), "UNIMPLEMENTED", "trace file")
        expect_error(client, lambda: update(client, trace_level=["LOUD"]), "INVALID_ARGUMENT", "'LOUD'")
        expect_error(client, lambda: update(client, trace_level=["OFF", "TENSORS"]), "INVALID_ARGUMENT", "OFF")
        expect_error(client, lambda: update(client, trace_rate="often"), "INVALID_ARGUMENT", "'trace_rate'")
        expect_error(client, lambda: update(client, trace_count="-2"), "INVALID_ARGUMENT", "'trace_count'")
        expect_error(client, lambda: trace_settings(client, "missing"), "NOT_FOUND", "missing")
        expect_error(client, lambda: update(client, "missing", trace_rate="1"), "NOT_FOUND", "missing")
        assert trace_settings(client)["trace_level"] == ["OFF"]


def test_tracing_cannot_start_without_a_file(launch_server, protocol):
    server = launch_server(EXAMPLE_MODELS)
    with server.client(protocol) as client:
        expect_error(
            client,
            lambda: update(client, trace_level=["TIMESTAMPS"]),
            "INVALID_ARGUMENT",
            "trace file name is not given",
        )
        assert trace_settings(client)["trace_level"] == ["OFF"]


def test_the_http_route_checks_types(launch_server, tmp_path):
    server = tracing_server(launch_server, tmp_path / "trace.json")
    response = post(server.http_url, "/v2/trace/setting", {"trace_rate": True})
    expect_error_response(response, 400, "'trace_rate' must be a string, a list of strings or null")
    response = post(server.http_url, "/v2/trace/setting", ["trace_rate"])
    expect_error_response(response, 400, "JSON object")
    response = post(server.http_url, "/v2/trace/setting", {"trace_verbosity": "1"})
    expect_error_response(response, 400, "unknown trace setting 'trace_verbosity'")


def test_bad_trace_flags_stop_the_server_and_older_ones_warn(launch_server, tmp_path):
    server = launch_server(EXAMPLE_MODELS, extra=["--trace-config=level=LOUD"], wait="nothing")
    assert server.wait_exit(30) != 0
    assert "bad --trace-config level=LOUD" in server.log
    trace_file = tmp_path / "trace.json"
    server = launch_server(EXAMPLE_MODELS, extra=["--trace-level=TIMESTAMPS", f"--trace-file={trace_file}"])
    assert server.wait_for_line(r"--trace-level flag is deprecated")
    with server.client("http") as client:
        assert trace_settings(client)["trace_level"] == ["TIMESTAMPS"]
        assert trace_settings(client)["trace_file"] == [str(trace_file)]


class Collector:
    """A stand-in OpenTelemetry collector on 127.0.0.1: it takes OTLP/HTTP
    exports (protobuf) and keeps their spans with their resource's
    attributes."""

    def __init__(self, tls=None):
        """`tls`: (certificate, key) files to take the exports over https."""
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the handler's API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                export = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                for resource_spans in export.resource_spans:
                    resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans.extend((resource, span) for span in scope_spans.spans)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def named(self, name):
        return [span for _, span in self.spans if span.name == name]

    def wait_for(self, count, name=None, timeout=30):
        """Waits (bounded) until `count` spans (named `name`, if given) came
        in, as the batch span processor sends them."""
        deadline = time.monotonic() + timeout
        while len(self.named(name) if name else self.spans) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def opentelemetry_flags(url):
    """Mode opentelemetry to `url`, every request traced, spans sent within
    0.1 s."""
    return [
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={url}",
        "--trace-config=opentelemetry,bsp_schedule_delay=100",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",
    ]


@pytest.fixture
def collector():
    collector = Collector()
    yield collector
    collector.stop()


def attributes(span):
    values = {}
    for kv in span.attributes:
        value = kv.value
        values[kv.key] = value.string_value if value.HasField("string_value") else value.int_value
    return values


def test_opentelemetry_mode_sends_spans_to_the_collector(launch_server, collector):
    # rate=1000: only requests that name their caller's span are traced.
    extra = [
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={collector.url}",
        "--trace-config=opentelemetry,resource=service.name=tritonrs-test",
        "--trace-config=opentelemetry,bsp_schedule_delay=100",
        "--trace-config=level=TIMESTAMPS",
    ]
    server = launch_server(EXAMPLE_MODELS, extra=extra)
    callers = {
        "http": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        "grpc": ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    }
    for protocol, (trace_id, span_id) in callers.items():
        with server.client(protocol) as client:
            settings = trace_settings(client)
            assert settings["trace_mode"] == ["opentelemetry"]
            assert settings["url"] == [collector.url]
            assert "trace_file" not in settings
            infer_simple(client, 2)
            wire = default_wire(client)
            a, b = simple_data()
            headers = {"traceparent": f"00-{trace_id}-{span_id}-01"}
            wire.infer(client, "simple", simple_inputs(a, b, wire), request_id="called", headers=headers)

    # Each request's three spans, once the batch span processor sent them.
    collector.wait_for(6)
    time.sleep(0.5)
    received = [(span.name, span.trace_id.hex()) for _, span in collector.spans]
    roots = collector.named("InferRequest")
    assert len(roots) == 2 and len(received) == 6, received
    assert all(resource["service.name"] == "tritonrs-test" for resource, _ in collector.spans)
    frontend_events = {"http": "HTTP_RECV_START", "grpc": "GRPC_WAITREAD_START"}
    for protocol, (trace_id, span_id) in callers.items():
        (root,) = [span for span in roots if span.trace_id.hex() == trace_id]
        assert root.parent_span_id.hex() == span_id, (protocol, received)
        assert frontend_events[protocol] in [event.name for event in root.events]
        (model,) = [span for span in collector.named("simple") if span.parent_span_id == root.span_id]
        assert attributes(model)["triton.model_name"] == "simple"
        assert attributes(model)["triton.model_version"] == 1
        assert attributes(model)["triton.request_id"] == "called"
        assert {"REQUEST_START", "QUEUE_START", "REQUEST_END"} <= {event.name for event in model.events}
        (compute,) = [span for span in collector.named("compute") if span.parent_span_id == model.span_id]
        assert [event.name for event in compute.events] == [
            "COMPUTE_START",
            "COMPUTE_INPUT_END",
            "COMPUTE_OUTPUT_START",
            "COMPUTE_END",
        ]
        times = {span.name: (span.start_time_unix_nano, span.end_time_unix_nano) for span in (root, model, compute)}
        nested = [
            root.start_time_unix_nano,
            model.start_time_unix_nano,
            compute.start_time_unix_nano,
            compute.end_time_unix_nano,
            model.end_time_unix_nano,
            root.end_time_unix_nano,
        ]
        assert nested == sorted(nested), (protocol, times, [event.name for event in root.events])


def test_opentelemetry_mode_sends_to_an_https_collector_it_trusts(launch_server, pki):
    """An https:// collector is checked against the system's authorities;
    SSL_CERT_FILE names another, as for any OpenSSL-minded program. Spans
    for a collector the server does not trust are dropped, and the
    requests still succeed."""
    collector = Collector(tls=(pki["server_cert"], pki["server_key"]))
    try:
        extra = opentelemetry_flags(collector.url)
        untrusting = launch_server(EXAMPLE_MODELS, extra=extra)
        with untrusting.client("grpc") as client:
            infer_simple(client, 1)
        time.sleep(1.5)
        assert collector.spans == []
        assert "UnknownIssuer" in untrusting.log
        trusting = launch_server(EXAMPLE_MODELS, extra=extra, env={"SSL_CERT_FILE": pki["ca"]})
        with trusting.client("http") as client:
            infer_simple(client, 2)
        collector.wait_for(2, name="InferRequest")
        assert len(collector.named("InferRequest")) == 2, [span.name for _, span in collector.spans]
        assert len(collector.named("compute")) == 2
    finally:
        collector.stop()


def ensemble_repository(tmp_path):
    """`simple` and the ensemble `twice`, which runs it twice."""
    from test_ensembles import SIMPLE, TWICE, ensemble_dir

    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    ensemble_dir(repository, "twice", TWICE)
    return repository


def twice_inputs(wire):
    a, b = simple_data()
    return [wire.input("A", a, "INT32"), wire.input("B", b, "INT32")]


def test_an_ensembles_steps_are_traced_as_its_children(launch_server, tmp_path, protocol):
    trace_file = tmp_path / "trace.json"
    extra = [f"--trace-config=triton,file={trace_file}", "--trace-config=level=TIMESTAMPS", "--trace-config=rate=1"]
    server = launch_server(ensemble_repository(tmp_path), extra=extra)
    with server.client(protocol) as client:
        wire = default_wire(client)
        wire.infer(client, "twice", twice_inputs(wire), request_id="pipeline")
    # The ensemble's trace, and one per step naming it as their parent.
    traces = read_traces(trace_file, 3)
    (ensemble_id,) = [id for id, trace in traces.items() if trace["header"]["model_name"] == "twice"]
    ensemble = traces[ensemble_id]
    assert ensemble["header"]["request_id"] == "pipeline" and "parent_id" not in ensemble["header"]
    steps = [trace for id, trace in traces.items() if id != ensemble_id]
    for step in steps:
        assert step["header"]["model_name"] == "simple" and step["header"]["parent_id"] == ensemble_id, step
        times = [step["timestamps"][name] for name in CORE_MOMENTS]
        assert times == sorted(times), list(zip(CORE_MOMENTS, times))
        # Inside the ensemble's own request.
        assert ensemble["timestamps"]["REQUEST_START"] < times[0] < times[-1] < ensemble["timestamps"]["REQUEST_END"]
    # The second step starts after the first has ended.
    first, second = sorted(steps, key=lambda step: step["timestamps"]["REQUEST_START"])
    assert first["timestamps"]["REQUEST_END"] <= second["timestamps"]["REQUEST_START"]


def test_opentelemetry_puts_an_ensembles_steps_under_its_model_span(launch_server, tmp_path, collector):
    server = launch_server(ensemble_repository(tmp_path), extra=opentelemetry_flags(collector.url))
    with server.client("grpc") as client:
        wire = default_wire(client)
        wire.infer(client, "twice", twice_inputs(wire))
    # InferRequest, twice, and for each of the two steps simple and compute.
    collector.wait_for(6)
    time.sleep(0.5)
    names = sorted(span.name for _, span in collector.spans)
    assert names == ["InferRequest", "compute", "compute", "simple", "simple", "twice"], names
    (root,) = collector.named("InferRequest")
    (ensemble,) = collector.named("twice")
    assert ensemble.parent_span_id == root.span_id
    ensemble_trace = attributes(ensemble)["triton.trace_id"]
    for step in collector.named("simple"):
        assert step.parent_span_id == ensemble.span_id and step.trace_id == root.trace_id
        assert attributes(step)["triton.parent_id"] == ensemble_trace
        assert len([span for span in collector.named("compute") if span.parent_span_id == step.span_id]) == 1


def test_generate_requests_are_traced(launch_server, tmp_path):
    trace_file = tmp_path / "trace.json"
    server = tracing_server(launch_server, trace_file, "level=TIMESTAMPS", "rate=1")
    a, b = simple_data()
    body = {"INPUT0": a.flatten().tolist(), "INPUT1": b.flatten().tolist(), "id": "generated"}
    assert post(server.http_url, "/v2/models/simple/generate", body).status == 200
    (trace,) = read_traces(trace_file, 1).values()
    assert (trace["header"]["model_name"], trace["header"]["request_id"]) == ("simple", "generated")
    received, sent = FRONTEND_MOMENTS["http"]
    order = received + CORE_MOMENTS + sent
    times = [trace["timestamps"][name] for name in order]
    assert times == sorted(times), list(zip(order, times))
