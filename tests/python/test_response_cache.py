"""Triton's response cache through tritonclient: with
`--cache-config local,size=N`, a model whose configuration enables
`response_cache` answers a repeated request without running, whichever
protocol asked; the statistics and metrics count hits and misses as Triton
does, and the least recently used answers make room when the cache is
full."""

import pytest

from model_requests import check_simple_result, simple_data, simple_inputs
from protocols import GRPC, HTTP, HTTP_JSON, as_numpy, connect, count, model_stats
from server_process import EXAMPLE_MODELS, copy_model
from test_metrics import scrape, value

SIMPLE = EXAMPLE_MODELS / "simple"
# One answer of `simple` at batch 1: two INT32 [1, 16] outputs of 64 bytes,
# with their names (7 bytes) and shapes (16 bytes): 174 bytes.
SIMPLE_ANSWER_BYTES = 2 * (64 + 7 + 16)


def config_text(name, cached):
    text = (SIMPLE / "config.pbtxt").read_text().replace('name: "simple"', f'name: "{name}"')
    return text + ("\nresponse_cache { enable: true }\n" if cached else "")


@pytest.fixture
def repository(tmp_path):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository, name="cached", config=config_text("cached", cached=True))
    copy_model(SIMPLE, repository, name="uncached", config=config_text("uncached", cached=False))
    return repository


def counts(client, model):
    stats = model_stats(client, model, "1")
    return {
        "hits": count(stats, "inference_stats", "cache_hit", "count"),
        "misses": count(stats, "inference_stats", "cache_miss", "count"),
        "successes": count(stats, "inference_stats", "success", "count"),
        "queued": count(stats, "inference_stats", "queue", "count"),
        "computed": count(stats, "inference_stats", "compute_infer", "count"),
        "inferences": count(stats, "inference_count"),
        "executions": count(stats, "execution_count"),
    }


def infer(client, wire, model, a, b, outputs=None):
    return wire.infer(client, model, simple_inputs(a, b, wire), outputs=outputs)


def test_a_repeated_request_is_answered_from_the_cache(launch_server, repository):
    server = launch_server(repository, extra=["--cache-config", "local,size=1048576"])
    a, b = simple_data(seed=1)
    with connect("grpc", server.grpc_url) as grpc, connect("http", server.http_url) as http:
        check_simple_result(infer(grpc, GRPC, "cached", a, b), a, b)
        # The same tensors over HTTP, as binary data and as JSON: the cache
        # holds answers, not wire messages.
        check_simple_result(infer(http, HTTP, "cached", a, b), a, b)
        check_simple_result(infer(http, HTTP_JSON, "cached", a, b), a, b)
        check_simple_result(infer(grpc, GRPC, "cached", a, b), a, b)
        assert counts(grpc, "cached") == {
            "hits": 3,
            "misses": 1,
            "successes": 4,
            "queued": 4,
            "computed": 1,
            "inferences": 1,
            "executions": 1,
        }
        # Other data, another batch size or fewer outputs are other requests.
        c, d = simple_data(seed=2)
        check_simple_result(infer(grpc, GRPC, "cached", c, d), c, d)
        e, f = simple_data(batch=3, seed=1)
        check_simple_result(infer(grpc, GRPC, "cached", e, f), e, f)
        only_sum = infer(grpc, GRPC, "cached", a, b, outputs=GRPC.outputs("OUTPUT0"))
        assert as_numpy(only_sum, "OUTPUT0").tolist() == (a + b).tolist()
        assert only_sum.get_output("OUTPUT1") is None
        after = counts(http, "cached")
        assert (after["hits"], after["misses"], after["inferences"], after["executions"]) == (3, 4, 6, 4)

        # A model that does not enable the cache runs every request.
        for _ in range(2):
            check_simple_result(infer(grpc, GRPC, "uncached", a, b), a, b)
        uncached = counts(grpc, "uncached")
        assert (uncached["hits"], uncached["misses"], uncached["executions"]) == (0, 0, 2)

    families = scrape(server.metrics_url)
    assert value(families, "nv_cache_num_hits_per_model", "cached") == 3
    assert value(families, "nv_cache_num_misses_per_model", "cached") == 4
    assert value(families, "nv_inference_request_success", "cached") == 7
    assert value(families, "nv_inference_count", "cached") == 6
    _, hit_samples = families["nv_cache_num_hits_per_model"]
    assert frozenset({"model": "uncached", "version": "1"}.items()) not in hit_samples


def test_the_least_recently_used_answers_make_room(launch_server, repository):
    # Room for two answers of batch 1, not three.
    size = 2 * SIMPLE_ANSWER_BYTES + SIMPLE_ANSWER_BYTES // 2
    server = launch_server(repository, extra=[f"--cache-config=local,size={size}"])
    first, second, third = (simple_data(seed=seed) for seed in (10, 11, 12))
    with connect("grpc", server.grpc_url) as client:
        for pair in (first, second, third):  # the third pushes out the first
            check_simple_result(infer(client, GRPC, "cached", *pair), *pair)
        for pair in (third, second):  # both still there
            check_simple_result(infer(client, GRPC, "cached", *pair), *pair)
        assert (counts(client, "cached")["hits"], counts(client, "cached")["misses"]) == (2, 3)
        check_simple_result(infer(client, GRPC, "cached", *first), *first)
        after = counts(client, "cached")
        assert (after["hits"], after["misses"], after["executions"]) == (2, 4, 4)
        # An answer larger than the whole cache runs each time.
        big = simple_data(batch=8, seed=13)
        for _ in range(2):
            check_simple_result(infer(client, GRPC, "cached", *big), *big)
        after = counts(client, "cached")
        assert (after["hits"], after["misses"], after["executions"]) == (2, 6, 6)


def test_without_a_server_cache_the_model_runs_every_request(launch_server, repository):
    server = launch_server(repository)
    a, b = simple_data(seed=3)
    with connect("http", server.http_url) as client:
        for _ in range(2):
            check_simple_result(infer(client, HTTP, "cached", a, b), a, b)
        after = counts(client, "cached")
        assert (after["hits"], after["misses"], after["executions"]) == (0, 0, 2)
    assert server.wait_for_line(r"model 'cached' version 1 enables response_cache, but the server has no cache")
    assert "nv_cache_num_hits_per_model" not in scrape(server.metrics_url)


def test_a_cache_this_server_does_not_have_stops_the_start(launch_server, repository):
    server = launch_server(repository, extra=["--cache-config=redis,host=localhost"], wait="nothing")
    assert server.wait_exit(timeout=30) != 0
    assert "no 'redis' cache" in server.log


def test_the_older_flag_still_sets_the_size(launch_server, repository):
    server = launch_server(repository, extra=["--response-cache-byte-size=65536"])
    a, b = simple_data(seed=4)
    with connect("grpc", server.grpc_url) as client:
        for _ in range(2):
            check_simple_result(infer(client, GRPC, "cached", a, b), a, b)
        assert counts(client, "cached")["hits"] == 1
    assert server.wait_for_line(r"--response-cache-byte-size is deprecated")
