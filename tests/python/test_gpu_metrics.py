"""Triton's GPU metrics (`nv_gpu_*`, `nv_energy_consumption`, one sample per
GPU labelled `gpu_uuid`), read from the NVIDIA management library. These
machines have no GPU, so the server loads tests/fake_nvml (built as
`target/debug/examples/libfake_nvml.so`) under NVML's name through
LD_LIBRARY_PATH: two made-up GPUs with fixed figures, an energy counter
that grows 2.5 J per reading, and a second GPU that cannot report its
power draw."""

import re
import time

import pytest

from server_process import stand_in_driver
from test_metrics import scrape

H100 = "GPU-f4ke0000-0000-0000-0000-000000000000"
L4 = "GPU-f4ke1111-1111-1111-1111-111111111111"
GIB = 1 << 30
GPU_FAMILIES = {
    "nv_gpu_utilization": "gauge",
    "nv_gpu_memory_total_bytes": "gauge",
    "nv_gpu_memory_used_bytes": "gauge",
    "nv_gpu_power_usage": "gauge",
    "nv_gpu_power_limit": "gauge",
    "nv_energy_consumption": "counter",
}


@pytest.fixture(scope="module")
def driver_dir(tmp_path_factory):
    return stand_in_driver(tmp_path_factory.mktemp("nvidia-driver"), "fake_nvml", "libnvidia-ml.so.1")


def start(launch_server, driver_dir, extra=(), **env):
    return launch_server(
        "tests/model_repository",
        extra=["--metrics-interval-ms=100", *extra],
        env={"LD_LIBRARY_PATH": str(driver_dir), **env},
    )


def per_gpu(families, name):
    _, samples = families[name]
    return {dict(labels)["gpu_uuid"]: value for labels, value in samples.items()}


def test_every_gpu_reports_triton_s_families_in_triton_s_units(launch_server, driver_dir):
    server = start(launch_server, driver_dir)
    server.wait_for_line(re.escape(f"Collecting metrics for GPU 0: Fake H100 ({H100})"))
    server.wait_for_line(re.escape(f"Collecting metrics for GPU 1: Fake L4 ({L4})"))
    time.sleep(0.3)
    families = scrape(server.metrics_url)
    assert {name: families[name][0] for name in GPU_FAMILIES} == GPU_FAMILIES
    assert per_gpu(families, "nv_gpu_utilization") == {H100: 0.37, L4: 0.05}
    assert per_gpu(families, "nv_gpu_memory_total_bytes") == {H100: 80 * GIB, L4: 24 * GIB}
    assert per_gpu(families, "nv_gpu_memory_used_bytes") == {H100: GIB, L4: GIB / 2}
    assert per_gpu(families, "nv_gpu_power_limit") == {H100: 700.0, L4: 72.0}
    # The L4 cannot say what it draws: its sample is left out, and the log
    # says so once.
    assert per_gpu(families, "nv_gpu_power_usage") == {H100: 123.456}
    assert sum(f"GPU {L4} does not report its power usage" in line for line in server.lines) == 1
    # Energy counts from the first reading, 2.5 J per reading since.
    first = per_gpu(families, "nv_energy_consumption")
    assert set(first) == {H100, L4}
    assert first[H100] > 0 and first[H100] % 2.5 == 0, first
    time.sleep(0.5)
    later = per_gpu(scrape(server.metrics_url), "nv_energy_consumption")
    assert later[H100] >= first[H100] + 2.5 and later[L4] >= first[L4] + 2.5, (first, later)
    # The CPU and model families are still there beside them.
    assert "nv_cpu_utilization" in families and "nv_inference_count" in families


def test_cuda_visible_devices_picks_the_gpus_reported(launch_server, driver_dir):
    server = start(launch_server, driver_dir, CUDA_VISIBLE_DEVICES="GPU-f4ke1")
    server.wait_for_line(re.escape(f"Collecting metrics for GPU 0: Fake L4 ({L4})"))
    time.sleep(0.3)
    families = scrape(server.metrics_url)
    assert per_gpu(families, "nv_gpu_utilization") == {L4: 0.05}
    assert "nv_gpu_power_usage" not in families

    server = start(launch_server, driver_dir, CUDA_VISIBLE_DEVICES="1,0")
    server.wait_for_line(re.escape(f"Collecting metrics for GPU 1: Fake H100 ({H100})"))
    time.sleep(0.3)
    assert set(per_gpu(scrape(server.metrics_url), "nv_gpu_memory_total_bytes")) == {H100, L4}


def test_no_visible_gpu_means_no_gpu_families(launch_server, driver_dir):
    server = start(launch_server, driver_dir, CUDA_VISIBLE_DEVICES="")
    server.wait_for_line(re.escape("no GPU metrics: CUDA_VISIBLE_DEVICES='' leaves none of the 2 GPU(s) visible"))
    assert not any(name.startswith(("nv_gpu", "nv_energy")) for name in scrape(server.metrics_url))


def test_allow_gpu_metrics_false_leaves_the_driver_alone(launch_server, driver_dir):
    server = start(launch_server, driver_dir, extra=["--allow-gpu-metrics=false"])
    time.sleep(0.3)
    assert not any(name.startswith(("nv_gpu", "nv_energy")) for name in scrape(server.metrics_url))
    assert not any("GPU" in line for line in server.lines), server.lines
    assert not any("ignoring" in line for line in server.lines), server.lines


def test_a_driver_that_fails_to_start_is_reported_and_the_server_serves_on(launch_server, driver_dir):
    server = start(launch_server, driver_dir, FAKE_NVML_INIT_ERROR="9")
    server.wait_for_line(re.escape("GPU metrics are off: nvmlInit_v2 failed: Driver Not Loaded (NVML error 9)"))
    families = scrape(server.metrics_url)
    assert not any(name.startswith(("nv_gpu", "nv_energy")) for name in families)
    assert "nv_inference_count" in families


def test_without_an_nvidia_driver_there_are_no_gpu_families(launch_server):
    server = launch_server("tests/model_repository", extra=["--metrics-interval-ms=100"])
    absent = "no GPU metrics: the NVIDIA management library libnvidia-ml.so.1 cannot be loaded ("
    server.wait_for_line(re.escape(absent))
    assert not any(name.startswith(("nv_gpu", "nv_energy")) for name in scrape(server.metrics_url))
