"""Triton's sequence batcher through tritonclient over gRPC and HTTP: the
requests of a sequence (`sequence_id`, `sequence_start`, `sequence_end`)
run in order with the START and CORRID control inputs and the implicit state
the previous request left; sequences batch together, wait for a free slot,
and give their slot back when they end or go idle.

The model, tests/model_repository/sequence_accumulator, sums a sequence's
INPUT values: OUTPUT is the running sum and SEQUENCE echoes the correlation
ID the server handed it."""

import itertools
import threading
import time

import numpy as np
import pytest

from model_requests import default_wire
from protocols import RPC_TIMEOUT_S, as_numpy, count, expect_error, model_config, model_metadata, model_stats
from server_process import TEST_MODELS, copy_model
from test_metrics import scrape, value

MODEL = "sequence_accumulator"
SOURCE = TEST_MODELS / MODEL
# Correlation IDs unique across the tests that share a server.
IDS = itertools.count(1000)

CONFIG = """
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [
  {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }},
  {{ name: "SEQUENCE" data_type: TYPE_UINT64 dims: [ 1 ] }}
]
sequence_batching {{
  max_sequence_idle_microseconds: {max_idle}
  {strategy}
  control_input [
    {{ name: "START" control [ {{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }} ] }},
    {{ name: "CORRID" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }} ] }}
  ]
  state [ {{ input_name: "IN_STATE" output_name: "OUT_STATE" data_type: TYPE_INT32 dims: [ 1 ] }} ]
}}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""


def accumulator(repository, max_batch_size=8, max_idle=60_000_000, strategy="direct { }"):
    config = CONFIG.format(max_batch_size=max_batch_size, max_idle=max_idle, strategy=strategy)
    return copy_model(SOURCE, repository, config=config)


def send(wire, client, value, sequence_id, start=False, end=False, model=MODEL):
    """One request of a sequence; returns (running sum, echoed ID, result)."""
    inputs = [wire.input("INPUT", np.array([[value]], dtype=np.int32))]
    result = wire.infer(client, model, inputs, sequence_id=sequence_id, sequence_start=start, sequence_end=end)
    return int(as_numpy(result, "OUTPUT")[0][0]), int(as_numpy(result, "SEQUENCE")[0][0]), result


def run_sequence(wire, client, values, sequence_id, model=MODEL):
    """Sends `values` as one whole sequence; returns the running sums."""
    sums = []
    for index, value in enumerate(values):
        total, echoed, _ = send(
            wire, client, value, sequence_id, start=index == 0, end=index == len(values) - 1, model=model
        )
        assert echoed == sequence_id
        sums.append(total)
    return sums


def test_a_sequence_keeps_its_running_sum_inside_the_server(client, wire):
    sequence_id = next(IDS)
    sums = []
    for index, value in enumerate([1, 2, 3, 4]):
        total, echoed, result = send(wire, client, value, sequence_id, start=index == 0, end=index == 3)
        sums.append(total)
        # The server hands the model the correlation ID, and keeps the
        # state output to itself.
        assert echoed == sequence_id
        assert result.get_output("OUT_STATE") is None
    assert sums == [1, 3, 6, 10]
    # The END request closed the sequence: continuing it needs a new START.
    expect_error(
        client,
        lambda: send(wire, client, 5, sequence_id),
        "INVALID_ARGUMENT",
        f"inference request for sequence {sequence_id} to model '{MODEL}' must specify the START flag on the first "
        "request of the sequence",
    )
    # A new START with the same ID begins from nothing.
    assert run_sequence(wire, client, [7, 1], sequence_id) == [7, 8]


def test_the_model_shows_only_the_clients_inputs_and_its_sequence_batching(client):
    metadata = model_metadata(client, MODEL)
    assert [tensor["name"] for tensor in metadata["inputs"]] == ["INPUT"]
    assert [tensor["name"] for tensor in metadata["outputs"]] == ["OUTPUT", "SEQUENCE"]
    batching = model_config(client, MODEL)["sequence_batching"]
    assert batching["state"][0]["input_name"] == "IN_STATE"
    assert [control["name"] for control in batching["control_input"]] == ["START", "CORRID"]


def test_requests_that_break_the_sequence_rules_are_refused(client):
    wire = default_wire(client)
    one = [wire.input("INPUT", np.array([[1]], dtype=np.int32))]
    cases = [
        (
            lambda: wire.infer(client, MODEL, one),
            f"inference request to model '{MODEL}' must specify a non-zero or non-empty correlation ID",
        ),
        (
            lambda: wire.infer(client, MODEL, one, sequence_id=0, sequence_start=True),
            "must specify a non-zero or non-empty correlation ID",
        ),
        (
            lambda: wire.infer(client, MODEL, one, sequence_id="text", sequence_start=True),
            f"sequence batching control 'CORRID' data-type is 'BYTES', but model '{MODEL}' expects 'UINT64'",
        ),
        (
            lambda: wire.infer(
                client,
                MODEL,
                [wire.input("INPUT", np.array([[1], [2]], dtype=np.int32))],
                sequence_id=next(IDS),
                sequence_start=True,
            ),
            f"inference request to model '{MODEL}' must specify batch-size 1 due to requirements of sequence batcher",
        ),
    ]
    for call, message in cases:
        expect_error(client, call, "INVALID_ARGUMENT", message)
    # None of them started a sequence, and the model still serves.
    assert run_sequence(wire, client, [2, 3], next(IDS)) == [2, 5]


def test_interleaved_sequences_batch_together_and_keep_their_own_state(launch_server, tmp_path):
    # Four sequences at once; the oldest strategy waits up to half a second
    # for a batch of 4, so each step of the four runs as one batch.
    strategy = "oldest { max_candidate_sequences: 4 preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 500000 }"
    accumulator(tmp_path / "models", strategy=strategy)
    server = launch_server(tmp_path / "models")
    wire = default_wire(server.client("grpc"))
    values = {sequence_id: [sequence_id * 10 + step for step in range(5)] for sequence_id in (1, 2, 3, 4)}
    sums, errors = {}, []

    def run(sequence_id):
        try:
            with server.client("grpc") as client:
                sums[sequence_id] = run_sequence(wire, client, values[sequence_id], sequence_id)
        except Exception as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=run, args=(sequence_id,)) for sequence_id in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=RPC_TIMEOUT_S * 2)
    assert not errors, errors
    for sequence_id, sent in values.items():
        assert sums[sequence_id] == list(itertools.accumulate(sent)), sequence_id
    with server.client("grpc") as client:
        stats = model_stats(client, MODEL)
    assert count(stats, "inference_count") == 20
    assert count(stats, "execution_count") == 5
    assert [int(batch["batch_size"]) for batch in stats["batch_stats"]] == [4]


def test_a_sequence_past_the_free_slots_waits_for_one_to_end(launch_server, tmp_path):
    # One instance that batches one row: one slot.
    accumulator(tmp_path / "models", max_batch_size=1)
    server = launch_server(tmp_path / "models")
    with server.client("grpc") as first, server.client("grpc") as second:
        wire = default_wire(first)
        assert send(wire, first, 5, 1, start=True)[0] == 5
        inputs = [wire.input("INPUT", np.array([[7]], dtype=np.int32))]
        waiting = wire.start_infer(second, MODEL, inputs, sequence_id=2, sequence_start=True)
        with pytest.raises(Exception):  # queue.Empty: no answer yet
            waiting(timeout=0.5)
        # Waiting for a slot is pending, as Triton counts it.
        assert value(scrape(server.metrics_url), "nv_inference_pending_request_count", MODEL) == 1
        # Sequence 1 ends; sequence 2 takes its slot.
        assert send(wire, first, 1, 1, end=True)[0] == 6
        assert int(as_numpy(waiting(), "OUTPUT")[0][0]) == 7
        # As in Triton, the wait for a slot is queue time.
        assert count(model_stats(first, MODEL), "inference_stats", "queue", "ns") >= 500_000_000


def test_an_idle_sequence_is_released(launch_server, tmp_path):
    accumulator(tmp_path / "models", max_idle=200_000)
    server = launch_server(tmp_path / "models")
    with server.client("http") as client:
        wire = default_wire(client)
        assert send(wire, client, 3, 9, start=True)[0] == 3
        assert send(wire, client, 4, 9)[0] == 7
        time.sleep(0.8)
        expect_error(client, lambda: send(wire, client, 1, 9), "INVALID_ARGUMENT", "must specify the START flag")


def test_an_ensemble_hands_its_sequence_to_a_stateful_step(launch_server, tmp_path):
    repository = tmp_path / "models"
    accumulator(repository)
    (repository / "running_sum" / "1").mkdir(parents=True)
    (repository / "running_sum" / "config.pbtxt").write_text(
        """name: "running_sum" platform: "ensemble" max_batch_size: 8
input [ { name: "VALUE" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "SEQUENCE" data_type: TYPE_UINT64 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "sequence_accumulator" model_version: -1
  input_map { key: "INPUT" value: "VALUE" }
  output_map { key: "OUTPUT" value: "OUTPUT" } output_map { key: "SEQUENCE" value: "SEQUENCE" } } ] }
"""
    )
    server = launch_server(repository)
    with server.client("grpc") as client:
        wire = default_wire(client)
        sums = []
        for index, value in enumerate([4, 5, 6]):
            inputs = [wire.input("VALUE", np.array([[value]], dtype=np.int32))]
            result = wire.infer(client, "running_sum", inputs, sequence_id=77, sequence_start=index == 0)
            assert int(as_numpy(result, "SEQUENCE")[0][0]) == 77
            sums.append(int(as_numpy(result, "OUTPUT")[0][0]))
        assert sums == [4, 9, 15]


def test_a_control_input_the_model_lacks_stops_the_load(launch_server, tmp_path):
    config = CONFIG.format(max_batch_size=8, max_idle=1_000_000, strategy="").replace('name: "START"', 'name: "BEGIN"')
    copy_model(SOURCE, tmp_path / "models", config=config)
    server = launch_server(tmp_path / "models", extra=["--exit-on-error=false"], wait="loaded")
    with server.client("grpc") as client:
        (row,) = [row for row in client.get_model_repository_index(as_json=True)["models"] if row["name"] == MODEL]
    assert row["state"] == "UNAVAILABLE"
    assert "sequence_batching input 'BEGIN' is not in the model, whose inputs are: INPUT, START, CORRID, IN_STATE" in (
        row["reason"]
    )


def test_a_warmup_sample_gives_the_control_and_state_inputs(launch_server, tmp_path):
    def zeros(name, datatype="TYPE_INT32"):
        return f'inputs {{ key: "{name}" value: {{ data_type: {datatype} dims: [ 1 ] zero_data: true }} }}'

    sample = " ".join([zeros("INPUT"), zeros("START"), zeros("CORRID", "TYPE_UINT64"), zeros("IN_STATE")])
    config = CONFIG.format(max_batch_size=8, max_idle=1_000_000, strategy="")
    copy_model(SOURCE, tmp_path / "models", config=config + f'model_warmup [ {{ name: "zeros" batch_size: 2 {sample} }} ]')
    server = launch_server(tmp_path / "models")
    with server.client("grpc") as client:
        # As in Triton, warmup runs count in the statistics: one execution of 2.
        stats = model_stats(client, MODEL)
        assert (count(stats, "inference_count"), count(stats, "execution_count")) == (2, 1)
        assert run_sequence(default_wire(client), client, [1, 1, 1], 5) == [1, 2, 3]
