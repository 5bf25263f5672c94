"""Ragged batching as Triton documents it: `ragged_sum` takes INPUT with
any number of elements per request (`allow_ragged_batch`), gets it flat
across the batch together with the `batch_input` tensors the server
computes, and echoes those back one row per request (see
scripts/generate_models.py), so each test reads exactly what the server
computed. DOUBLED is a `batch_output` cut after each request's INPUT shape."""

import numpy as np
import pytest

from model_requests import default_wire
from protocols import as_numpy, connect, count, expect_error, model_metadata, model_stats
from server_process import TEST_MODELS, copy_model

RAGGED = TEST_MODELS / "ragged_sum"


def ragged_input(wire, values):
    return [wire.input("INPUT", np.array([values], dtype=np.float32))]


def scalar(result, name):
    (value,) = as_numpy(result, name).reshape(-1).tolist()
    return value


def check_own_values(result, values):
    """What a request gets whatever its batch: its sum, count, shapes and doubled elements."""
    assert scalar(result, "SUM") == sum(values)
    assert scalar(result, "COUNT") == len(values)
    assert scalar(result, "ITEM_SHAPE") == len(values)
    assert scalar(result, "FLAT_SHAPE") == len(values)
    doubled = as_numpy(result, "DOUBLED")
    assert doubled.shape == (1, len(values))
    assert doubled.tolist() == [[2 * value for value in values]]


def test_a_lone_request_is_a_batch_of_one(client):
    wire = default_wire(client)
    values = [1.5, 2.0, 3.0, 4.0, 5.0]
    result = wire.infer(client, "ragged_sum", ragged_input(wire, values))
    check_own_values(result, values)
    assert scalar(result, "END") == 5
    assert scalar(result, "LONGEST_COUNT") == 5
    # Clients see only INPUT: the batch inputs are the server's to give.
    inputs = model_metadata(client, "ragged_sum")["inputs"]
    assert [(tensor["name"], [int(dim) for dim in tensor["shape"]]) for tensor in inputs] == [("INPUT", [-1, -1])]


def test_a_client_cannot_send_a_batch_input(client):
    wire = default_wire(client)
    inputs = ragged_input(wire, [1.0]) + [wire.input("COUNTS", np.array([[1.0]], dtype=np.float32))]
    expect_error(
        client, lambda: wire.infer(client, "ragged_sum", inputs), "INVALID_ARGUMENT", "ragged_sum", "'COUNTS'"
    )


BATCHING = """
max_batch_size: 8
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { preferred_batch_size: [ 3 ] max_queue_delay_microseconds: 10000000 }
"""


@pytest.fixture
def batching_url(tmp_path, launch_server, protocol):
    """A server of `ragged_sum` that waits (up to 10 s) for 3 requests to form a batch."""
    config = (RAGGED / "config.pbtxt").read_text().replace("max_batch_size: 8", "").replace("dynamic_batching { }", "")
    copy_model(RAGGED, tmp_path, config=config + BATCHING)
    return launch_server(tmp_path).url_for(protocol)


def test_requests_of_different_lengths_share_one_batch_unpadded(protocol, batching_url):
    lengths = (2, 3, 4)
    sent = {length: [float(10 * length + index) for index in range(length)] for length in lengths}
    # tritonclient.http sends one request at a time unless told otherwise.
    options = {"concurrency": len(lengths)} if protocol == "http" else {}
    with connect(protocol, batching_url, **options) as client:
        wire = default_wire(client)
        waits = {length: wire.start_infer(client, "ragged_sum", ragged_input(wire, sent[length])) for length in lengths}
        results = {length: wait() for length, wait in waits.items()}
        stats = model_stats(client, "ragged_sum")
    # One execution of three requests of three shapes.
    assert count(stats, "execution_count") == 1
    assert count(stats, "inference_count") == 3
    assert [(int(batch["batch_size"]), count(batch, "compute_infer", "count")) for batch in stats["batch_stats"]] == [
        (3, 1)
    ]
    for length, result in results.items():
        check_own_values(result, sent[length])
        # The longest request in the batch has 4 elements.
        assert scalar(result, "LONGEST_COUNT") == 4
    # Each END is the elements of the requests up to and including its own,
    # in the batch's order, which the arrival order decided.
    by_end = sorted(lengths, key=lambda length: scalar(results[length], "END"))
    assert [scalar(results[length], "END") for length in by_end] == list(np.cumsum(by_end))


def test_a_model_that_does_not_take_a_batch_input_fails_to_load(tmp_path, launch_server, protocol):
    config = (RAGGED / "config.pbtxt").read_text()
    wrong_type = config.replace(
        'target_name: "COUNTS" data_type: TYPE_FP32', 'target_name: "COUNTS" data_type: TYPE_INT32'
    )
    assert wrong_type != config
    copy_model(RAGGED, tmp_path, config=wrong_type)
    server = launch_server(tmp_path, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        assert client.is_model_ready("ragged_sum") is False
        expect_error(
            client,
            lambda: model_metadata(client, "ragged_sum"),
            "UNAVAILABLE",
            "batch_input target 'COUNTS' is configured as INT32 but the model declares FP32",
        )


def test_warmup_samples_run_as_ragged_batches(tmp_path, launch_server, protocol):
    # Without the batch inputs the model could not run, and the load would fail.
    warmup = """
instance_group [ { count: 1 kind: KIND_CPU } ]
model_warmup [ { name: "two_rows" batch_size: 2
  inputs { key: "INPUT" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } } ]
"""
    copy_model(RAGGED, tmp_path, config=(RAGGED / "config.pbtxt").read_text() + warmup)
    server = launch_server(tmp_path)
    with server.client(protocol) as client:
        stats = model_stats(client, "ragged_sum")
        assert (count(stats, "execution_count"), count(stats, "inference_count")) == (1, 2)
        wire = default_wire(client)
        check_own_values(wire.infer(client, "ragged_sum", ragged_input(wire, [7.0])), [7.0])
