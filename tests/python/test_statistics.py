"""Triton's statistics extension through tritonclient, which perf_analyzer
reads the same way: counts must match the requests sent, and batching must
show as fewer executions than inferences."""

import time

from model_requests import (
    batch_busy_loop_inputs,
    check_simple_result,
    default_wire,
    in_background,
    simple_data,
    simple_inputs,
)
from protocols import as_numpy, connect, count, model_stats

BATCHING_MODEL = "batch_busy_loop"


def batch_counts(stats):
    return {int(batch["batch_size"]): count(batch, "compute_infer", "count") for batch in stats.get("batch_stats", [])}


def test_counts_match_the_requests_sent(client):
    wire = default_wire(client)
    before = model_stats(client, "simple", "1")
    sizes = [1, 3, 3, 8]
    for seed, batch in enumerate(sizes):
        a, b = simple_data(batch, seed=seed)
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire)), a, b)
    after = model_stats(client, "simple", "1")
    assert (after["name"], after["version"]) == ("simple", "1")

    def grown(*path):
        return count(after, *path) - count(before, *path)

    assert grown("inference_count") == sum(sizes)
    assert grown("execution_count") == len(sizes)
    for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert grown("inference_stats", phase, "count") == len(sizes), phase
    assert grown("inference_stats", "fail", "count") == 0
    # Milliseconds since the epoch of the last inference: just now.
    assert abs(count(after, "last_inference") - time.time() * 1000) < 60_000
    new_batches = {size: n - batch_counts(before).get(size, 0) for size, n in batch_counts(after).items()}
    assert {size: n for size, n in new_batches.items() if n} == {1: 1, 3: 2, 8: 1}


def test_batching_shows_as_fewer_executions_than_inferences(client, protocol, url):
    # batch_busy_loop has no config.pbtxt: auto-complete gives it the dynamic
    # batcher, max_batch_size 4 and two instances. Two long requests keep
    # both instances busy while eight short ones queue up behind them, and
    # the batcher merges those into batches of up to 4.
    wire = default_wire(client)
    started = time.monotonic()
    client.infer(BATCHING_MODEL, batch_busy_loop_inputs(200_000, [0.0], wire))
    one_second = int(200_000 / max(time.monotonic() - started, 1e-3))
    before = model_stats(client, BATCHING_MODEL)
    long_requests = [
        in_background(protocol, url, lambda c: c.infer(BATCHING_MODEL, batch_busy_loop_inputs(one_second, [-1.0], default_wire(c))))
        for _ in range(2)
    ]
    time.sleep(0.3)
    # tritonclient.http sends async requests one at a time unless told
    # otherwise; the burst must arrive together to queue together.
    options = {"concurrency": 8} if protocol == "http" else {}
    with connect(protocol, url, **options) as burst:
        waits = [wire.start_infer(burst, BATCHING_MODEL, batch_busy_loop_inputs(n, [float(n)], wire)) for n in range(8)]
        for n, wait in enumerate(waits):
            result = wait(60)
            assert as_numpy(result, "COUNT").tolist() == [[n]]
            assert as_numpy(result, "PAYLOAD_OUT").tolist() == [[float(n)]]
    for finished in long_requests:
        _, _, error = finished.get(timeout=60)
        assert error is None, error
    after = model_stats(client, BATCHING_MODEL)
    inferences = count(after, "inference_count") - count(before, "inference_count")
    executions = count(after, "execution_count") - count(before, "execution_count")
    assert inferences == 10
    assert executions < inferences, (executions, batch_counts(after))
    assert max(batch_counts(after)) <= 4
