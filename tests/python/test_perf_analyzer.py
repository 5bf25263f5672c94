"""Triton's own load generator, perf_analyzer, runs against the server in
the ways its users run it: synchronous and asynchronous calls, the gRPC
stream, system shared memory, request batches, dynamic batching,
sequences, ensembles, the response cache, server metrics and trace
settings, over gRPC and HTTP. It reads the model's configuration, statistics and metrics from the
server, and with `--input-data` it checks every answer against expected
outputs. The binary comes from scripts/fetch-perf-analyzer.sh."""

import json
import os
import re
import subprocess

import pytest

from protocols import connect
from server_process import (
    EXAMPLE_MODELS,
    REPO_ROOT,
    SHARED_REPOSITORIES,
    copy_model,
    server_args,
    stand_in_driver,
    start_server,
)
from test_ensembles import TWICE, ensemble_dir
from test_gpu_metrics import H100, L4
from test_model_loading import simple_config
from test_trace import CORE_MOMENTS, FRONTEND_MOMENTS, read_traces

PERF_ANALYZER_DIR = REPO_ROOT / ".deps" / "perf_analyzer"
PERF_ANALYZER = PERF_ANALYZER_DIR / "bin" / "perf_analyzer"

pytestmark = pytest.mark.skipif(
    not PERF_ANALYZER.is_file(), reason=f"{PERF_ANALYZER} is missing; run scripts/fetch-perf-analyzer.sh"
)

# Copies of `simple`: with Triton's dynamic batcher in front of it, with its
# answers kept in the response cache, and one for tracing alone.
SIMPLE_COPIES = {
    "simple_batching": "\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n",
    "simple_cached": "\nresponse_cache { enable: true }\n",
    "simple_traced": "",
}

# The inputs of every request with `--input-data`.
INPUT0 = list(range(16))
INPUT1 = [3] * 16


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    """The server's trace file; tracing stays off until a client turns it on."""
    return tmp_path_factory.mktemp("traces") / "trace.json"


@pytest.fixture(scope="module")
def pa_server(tmp_path_factory, trace_file):
    """A server that lets clients register shared memory (as
    `--shared-memory` needs), has a response cache and a trace file, and
    sees the two GPUs of the stand-in NVIDIA driver (tests/fake_nvml),
    serving the shared models, `simple_batching`, `simple_cached`,
    `simple_traced` and the ensemble `twice`."""
    models = tmp_path_factory.mktemp("perf_analyzer_models")
    for name, extra in SIMPLE_COPIES.items():
        copy_model(EXAMPLE_MODELS / "simple", models, name, config=simple_config(name, extra))
    ensemble_dir(models, "twice", TWICE)
    driver = stand_in_driver(tmp_path_factory.mktemp("nvidia-driver"), "fake_nvml", "libnvidia-ml.so.1")
    flags = ["--allow-client-shm=true", "--cache-config=local,size=1048576", "--metrics-interval-ms=100"]
    flags.append(f"--trace-config=triton,file={trace_file}")
    server = start_server(
        server_args(*SHARED_REPOSITORIES, models, extra=flags), env={"LD_LIBRARY_PATH": str(driver)}
    )
    yield server
    assert server.stop() == 0, server.log


def input_data(tmp_path, offset=0):
    """perf_analyzer's `--input-data` file for `simple`: one pair of inputs
    and, as `validation_data`, the sum and difference it must get back
    (each off by `offset`)."""
    expected = {
        "OUTPUT0": [a + b + offset for a, b in zip(INPUT0, INPUT1)],
        "OUTPUT1": [a - b for a, b in zip(INPUT0, INPUT1)],
    }
    return data_file(tmp_path / f"simple_{offset}.json", {"INPUT0": INPUT0, "INPUT1": INPUT1}, expected)


def data_file(path, inputs, expected):
    path.write_text(json.dumps({"data": [inputs], "validation_data": [expected]}))
    return path


def run_perf_analyzer(server, protocol, model, *args, concurrency=1):
    """Runs perf_analyzer for three short windows at one concurrency; returns
    the finished process."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    command = [
        str(PERF_ANALYZER),
        "-m", model,
        "-u", url,
        "-i", protocol,
        "--concurrency-range", f"{concurrency}:{concurrency}",
        # 300 ms windows; any three in a row within 100 % of each other
        # count as stable, since this checks behaviour, not speed.
        "-p", "300",
        "-s", "100",
        "-r", "10",
        *map(str, args),
    ]  # fmt: skip
    env = dict(os.environ, LD_LIBRARY_PATH=str(PERF_ANALYZER_DIR / "lib"))
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def report(finished):
    """The counts of perf_analyzer's summary: what the client sent in the
    last window, and what the server's statistics say it did meanwhile (a
    count the summary leaves out is None)."""
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, f"perf_analyzer failed ({finished.returncode}):\n{output}"
    server = output.split("Composing models:")[0]

    def number(label, required=True):
        found = re.search(rf"{label}: (\d+)", server)
        assert found or not required, f"no '{label}' in perf_analyzer's output:\n{output}"
        return int(found.group(1)) if found else None

    return {
        "requests": number("Request count"),
        "inferences": number("Inference count"),
        "executions": number("Execution count"),
        "successes": number("Successful request count"),
        "cache_hits": number("Cache hit count", required=False),
        "cache_misses": number("Cache miss count", required=False),
    }


def composing_counts(finished):
    """Per composing model of an ensemble, its counts as perf_analyzer
    lists them under "Composing models"."""
    _, _, composing = (finished.stdout + finished.stderr).partition("Composing models:")
    found = re.findall(
        r"(\S+), version: (\S*)\s+Inference count: (\d+)\s+Execution count: (\d+)\s+"
        r"Successful request count: (\d+)",
        composing,
    )
    return {model: {"inferences": int(i), "executions": int(e), "successes": int(n)} for model, _, i, e, n in found}


def assert_server_counted_the_clients_requests(counts, concurrency=1, batch=1):
    assert_successes_match_requests(counts, concurrency)
    assert counts["inferences"] == batch * counts["successes"], counts


def assert_successes_match_requests(counts, concurrency):
    # perf_analyzer asks for the server's statistics just after each window
    # edge and counts its own requests by their times within the window, so
    # the server's count may also hold the requests in flight at an edge and
    # those that ended while the statistics were on their way: a few more.
    assert counts["requests"] - concurrency <= counts["successes"], counts
    assert counts["successes"] <= counts["requests"] * 1.02 + concurrency, counts


@pytest.mark.parametrize(
    ("transport", "mode"),
    [("grpc", []), ("http", []), ("grpc", ["--async"]), ("http", ["--async"]), ("grpc", ["--streaming"])],
    ids=["grpc-sync", "http-sync", "grpc-async", "http-async", "grpc-streaming"],
)
def test_every_answer_matches_the_expected_outputs(pa_server, tmp_path, transport, mode):
    finished = run_perf_analyzer(
        pa_server, transport, "simple", "--input-data", input_data(tmp_path), *mode, concurrency=2
    )
    counts = report(finished)
    assert_server_counted_the_clients_requests(counts, concurrency=2)
    assert counts["executions"] == counts["successes"], counts


def test_a_wrong_answer_would_be_caught(pa_server, tmp_path, protocol):
    """The check above has teeth: told to expect OUTPUT0 off by one,
    perf_analyzer fails on the first answer."""
    finished = run_perf_analyzer(pa_server, protocol, "simple", "--input-data", input_data(tmp_path, offset=1))
    assert finished.returncode != 0
    assert "Output doesn't match expected output" in finished.stdout + finished.stderr


def test_string_answers_match_the_expected_outputs(pa_server, tmp_path, protocol):
    """`simple_string` takes and gives BYTES tensors of numbers written out:
    perf_analyzer compares the answers' serialized bytes (each string after
    its 4-byte length) with the strings it expects."""
    inputs = {"INPUT0": [str(a) for a in INPUT0], "INPUT1": [str(b) for b in INPUT1]}
    expected = {
        "OUTPUT0": [str(a + b) for a, b in zip(INPUT0, INPUT1)],
        "OUTPUT1": [str(a - b) for a, b in zip(INPUT0, INPUT1)],
    }
    data = data_file(tmp_path / "simple_string.json", inputs, expected)
    finished = run_perf_analyzer(pa_server, protocol, "simple_string", "--input-data", data)
    assert_server_counted_the_clients_requests(report(finished))


def test_system_shared_memory(pa_server, protocol):
    finished = run_perf_analyzer(pa_server, protocol, "simple", "--shared-memory", "system", "-b", "4")
    assert_server_counted_the_clients_requests(report(finished), batch=4)
    # perf_analyzer unregisters its regions when it ends.
    with connect(protocol, pa_server.url_for(protocol)) as client:
        regions = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
    assert not (regions.get("regions") if isinstance(regions, dict) else regions), regions


def test_request_batches(pa_server, protocol):
    finished = run_perf_analyzer(pa_server, protocol, "simple", "-b", "8")
    counts = report(finished)
    assert_server_counted_the_clients_requests(counts, batch=8)
    assert counts["executions"] == counts["successes"], counts


def test_dynamic_batching_shows_in_the_statistics_it_reads(pa_server):
    finished = run_perf_analyzer(pa_server, "grpc", "simple_batching", concurrency=8)
    counts = report(finished)
    assert_server_counted_the_clients_requests(counts, concurrency=8)
    # Eight clients at once, a 2 ms window to gather them: batches form.
    assert counts["executions"] * 2 <= counts["inferences"], counts


@pytest.mark.parametrize(
    ("transport", "mode"), [("grpc", []), ("grpc", ["--streaming"]), ("http", [])], ids=["grpc", "grpc-streaming", "http"]
)
def test_sequences(pa_server, transport, mode):
    finished = run_perf_analyzer(
        pa_server, transport, "sequence_accumulator", "--sequence-length", "4", *mode, concurrency=2
    )
    assert_server_counted_the_clients_requests(report(finished), concurrency=2)


def test_an_ensemble_and_its_composing_models(pa_server, tmp_path):
    """`twice` runs `simple` two times per request; perf_analyzer checks its
    three outputs and lists `simple` under "Composing models"."""
    expected = {
        "TWICE_A": [2 * a for a in INPUT0],
        "TWICE_B": [2 * b for b in INPUT1],
        "SUM": [a + b for a, b in zip(INPUT0, INPUT1)],
    }
    data = data_file(tmp_path / "twice.json", {"A": INPUT0, "B": INPUT1}, expected)
    finished = run_perf_analyzer(pa_server, "grpc", "twice", "--input-data", data)
    counts = report(finished)
    assert_server_counted_the_clients_requests(counts)
    composing = composing_counts(finished)
    assert list(composing) == ["simple"], finished.stdout
    # Each model's statistics are read a moment apart, so a request may
    # have run one of its steps in between.
    assert abs(composing["simple"]["successes"] - 2 * counts["successes"]) <= 2, (counts, composing)


def test_answers_from_the_response_cache(pa_server, tmp_path):
    """The same request over and over: after its first answer every one
    comes from the cache, and perf_analyzer reports them as hits."""
    finished = run_perf_analyzer(pa_server, "grpc", "simple_cached", "--input-data", input_data(tmp_path))
    counts = report(finished)
    assert_successes_match_requests(counts, concurrency=1)
    assert counts["cache_misses"] <= 1, counts
    assert counts["cache_hits"] + counts["cache_misses"] == counts["successes"], counts
    # Only a miss runs the model, and only what runs counts as inferences.
    assert counts["executions"] == counts["inferences"] == counts["cache_misses"], counts


def test_gpu_metrics_collection(pa_server):
    """`--collect-metrics` reads the Prometheus page (port 8002 in a
    deployment) while it measures, and reports the stand-in driver's GPUs
    with their made-up figures."""
    metrics_url = pa_server.metrics_url + "/metrics"
    finished = run_perf_analyzer(
        pa_server, "grpc", "simple", "--collect-metrics", "--metrics-url", metrics_url, "--metrics-interval", "100"
    )
    assert_server_counted_the_clients_requests(report(finished))
    _, _, metrics = finished.stdout.partition("Server Prometheus Metrics:")
    assert f"{H100} : 37%" in metrics and f"{L4} : 5%" in metrics, finished.stdout
    assert f"{H100} : 123.456 watts" in metrics, finished.stdout
    assert f"{H100} : 85899345920 bytes" in metrics, finished.stdout


def test_trace_settings_it_sets(pa_server, trace_file):
    """`--trace-level`, `--trace-rate`, `--trace-count` and `--log-frequency`
    set the model's trace settings before it measures: five requests are
    traced, every moment of each in order, and written to the trace file's
    first numbered part."""
    finished = run_perf_analyzer(
        pa_server,
        "grpc",
        "simple_traced",
        *("--trace-level", "TIMESTAMPS", "--trace-rate", "1", "--trace-count", "5", "--log-frequency", "5"),
    )
    assert_server_counted_the_clients_requests(report(finished))
    traces = read_traces(trace_file.with_name(trace_file.name + ".0"), 5)
    received, sent = FRONTEND_MOMENTS["grpc"]
    order = received + CORE_MOMENTS + sent
    for trace in traces.values():
        assert trace["header"]["model_name"] == "simple_traced"
        times = [trace["timestamps"][name] for name in order]
        assert times == sorted(times), list(zip(order, times))
