"""Triton's Prometheus metrics on the metrics port, read with Prometheus'
own text-format parser (prometheus_client), as a scraper reads them."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from protocols import count, model_stats

# The families and types Triton's dashboards and alerts use.
FAMILIES = {
    "nv_inference_request_success": "counter",
    "nv_inference_request_failure": "counter",
    "nv_inference_count": "counter",
    "nv_inference_exec_count": "counter",
    "nv_inference_request_duration_us": "counter",
    "nv_inference_queue_duration_us": "counter",
    "nv_inference_compute_input_duration_us": "counter",
    "nv_inference_compute_infer_duration_us": "counter",
    "nv_inference_compute_output_duration_us": "counter",
    "nv_inference_pending_request_count": "gauge",
    "nv_model_load_duration_secs": "gauge",
}
CPU_FAMILIES = {
    "nv_cpu_utilization": "gauge",
    "nv_cpu_memory_total_bytes": "gauge",
    "nv_cpu_memory_used_bytes": "gauge",
}


def scrape(metrics_url):
    """{family name: (type, {frozenset of labels: value})} from /metrics."""
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.read().decode()
    families = {}
    for family in text_string_to_metric_families(text):
        # The family keeps the name on the page (Triton's counters have no
        # `_total` suffix, which the parser adds to their samples' names).
        samples = {frozenset(sample.labels.items()): sample.value for sample in family.samples}
        families[family.name] = (family.type, samples)
    return families


def value(families, name, model, version="1", **labels):
    _, samples = families[name]
    return samples[frozenset({"model": model, "version": version, **labels}.items())]


def test_the_families_triton_reports_with_a_sample_per_loaded_version(server):
    families = scrape(server.metrics_url)
    assert {name: kind for name, (kind, _) in families.items()} == FAMILIES | CPU_FAMILIES
    for model in ("simple", "batch_busy_loop", "identity_fp32"):
        assert value(families, "nv_model_load_duration_secs", model) > 0
        for reason in ("BACKEND", "CANCELED", "OTHER", "REJECTED"):
            assert value(families, "nv_inference_request_failure", model, reason=reason) == 0


def test_counts_grow_with_the_requests_sent_and_agree_with_the_statistics(server, client):
    wire = default_wire(client)
    before = scrape(server.metrics_url)
    sizes = [1, 4, 2]
    for seed, batch in enumerate(sizes):
        a, b = simple_data(batch, seed=seed)
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire)), a, b)
    after = scrape(server.metrics_url)

    def grown(name):
        return value(after, name, "simple") - value(before, name, "simple")

    assert grown("nv_inference_request_success") == len(sizes)
    assert grown("nv_inference_count") == sum(sizes)
    assert grown("nv_inference_exec_count") == len(sizes)
    assert grown("nv_inference_compute_infer_duration_us") > 0
    assert grown("nv_inference_request_duration_us") >= grown("nv_inference_compute_infer_duration_us")
    assert value(after, "nv_inference_pending_request_count", "simple") == 0
    stats = model_stats(client, "simple", "1")
    assert value(after, "nv_inference_request_success", "simple") == count(stats, "inference_stats", "success", "count")
    assert value(after, "nv_inference_count", "simple") == count(stats, "inference_count")
    assert value(after, "nv_inference_queue_duration_us", "simple") == count(stats, "inference_stats", "queue", "ns") // 1000


def test_other_paths_are_not_found(server):
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://{server.metrics_url}/v2/health/ready", timeout=10)
    assert error.value.code == 404


def machine_value(families, name):
    _, samples = families[name]
    return samples[frozenset()]


def test_cpu_utilization_follows_the_machine_and_memory_is_reported(launch_server):
    server = launch_server("tests/model_repository", extra=["--metrics-interval-ms=100"])
    # One core kept busy by another process for a few intervals.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.6)
        families = scrape(server.metrics_url)
    finally:
        spinner.kill()
        spinner.wait()
    utilization = machine_value(families, "nv_cpu_utilization")
    assert 0.5 / os.cpu_count() <= utilization <= 1.0
    total = machine_value(families, "nv_cpu_memory_total_bytes")
    used = machine_value(families, "nv_cpu_memory_used_bytes")
    assert 0 < used < total
    assert total == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_allow_cpu_metrics_false_leaves_the_cpu_families_out(launch_server):
    server = launch_server("tests/model_repository", extra=["--allow-cpu-metrics=false"])
    families = scrape(server.metrics_url)
    assert {name: kind for name, (kind, _) in families.items()} == FAMILIES


def test_allow_metrics_false_serves_no_metrics(launch_server):
    server = launch_server("tests/model_repository", extra=["--allow-metrics=false"])
    assert not any("Metrics Service" in line for line in server.lines)
    assert "metrics" not in server.ports


def scrape_samples(metrics_url):
    """({family name: type}, {(sample name, frozenset of labels): value})."""
    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    kinds, samples = {}, {}
    for family in text_string_to_metric_families(text):
        kinds[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return kinds, samples


def test_metrics_config_trades_latency_counters_for_summaries_and_a_histogram(launch_server):
    server = launch_server(
        "tests/model_repository",
        extra=[
            "--metrics-config=counter_latencies=false",
            "--metrics-config=summary_latencies=true",
            "--metrics-config",
            "summary_quantiles=0.5:0.05,0.99:0.001",
            "--metrics-config=histogram_latencies=true",
        ],
    )
    requests = 6
    with server.client() as client:
        for n in range(requests):
            wire = default_wire(client)
            client.infer("identity_fp32", [wire.input("INPUT0", np.full((1, 4), n, dtype=np.float32))])
    kinds, samples = scrape_samples(server.metrics_url)
    model = {"model": "identity_fp32", "version": "1"}

    def sample(name, **labels):
        return samples[(name, frozenset({**model, **labels}.items()))]

    # Counters of requests stay; latency counters go.
    assert kinds["nv_inference_request_success"] == "counter"
    # (The parser names counter samples with a `_total` suffix.)
    assert sample("nv_inference_request_success_total") == requests
    assert not {name for name in kinds if name.endswith("_duration_us")}
    for family in ("request", "queue", "compute_input", "compute_infer", "compute_output"):
        name = f"nv_inference_{family}_summary_us"
        assert kinds[name] == "summary", name
        assert sample(f"{name}_count") == requests, name
        assert sample(f"{name}_sum") >= 0, name
    request = "nv_inference_request_summary_us"
    median, slowest = sample(request, quantile="0.5"), sample(request, quantile="0.99")
    # Every request took some microseconds; the quantiles are among them.
    assert 0 < median <= slowest <= sample(f"{request}_sum"), (median, slowest)
    histogram = "nv_inference_first_response_histogram_ms"
    assert kinds[histogram] == "histogram"
    assert sample(f"{histogram}_bucket", le="+Inf") == requests
    assert sample(f"{histogram}_bucket", le="100") == requests
    assert sample(f"{histogram}_count") == requests


def test_a_malformed_metrics_config_stops_the_start(launch_server):
    server = launch_server("tests/model_repository", extra=["--metrics-config=summary_latencies"], wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert any("--metrics-config takes <setting>=<value>" in line for line in server.lines), server.lines
