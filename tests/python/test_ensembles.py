"""Triton's ensembles (platform "ensemble") through tritonclient over gRPC
and HTTP: a pipeline of the example `simple` model runs its steps in order
and side by side, passes its tensors along and batches like its composing
models; its statistics count each request once, the composing models' each
step; a broken pipeline fails to load and says why; an ensemble follows
its composing models, serving while they serve."""

import shutil
import time

import numpy as np
import pytest

from model_requests import default_wire, simple_data
from protocols import as_numpy, count, expect_error, model_config, model_metadata, model_stats
from server_process import EXAMPLE_MODELS, copy_model
from test_metrics import scrape, value
from test_model_repository import index_rows

SIMPLE = EXAMPLE_MODELS / "simple"

TENSORS = """
input [
  { name: "A" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "B" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "TWICE_A" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "TWICE_B" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "SUM" data_type: TYPE_INT32 dims: [ 16 ] }
]
"""

# simple(a, b) gives a + b and a - b; run again on those it gives 2a and 2b.
TWICE = (
    """name: "twice" platform: "ensemble" max_batch_size: 8"""
    + TENSORS
    + """
ensemble_scheduling {
  step [
    {
      model_name: "simple"
      model_version: -1
      input_map { key: "INPUT0" value: "A" }
      input_map { key: "INPUT1" value: "B" }
      output_map { key: "OUTPUT0" value: "SUM" }
      output_map { key: "OUTPUT1" value: "difference" }
    },
    {
      model_name: "simple"
      model_version: 1
      input_map { key: "INPUT0" value: "SUM" }
      input_map { key: "INPUT1" value: "difference" }
      output_map { key: "OUTPUT0" value: "TWICE_A" }
      output_map { key: "OUTPUT1" value: "TWICE_B" }
    }
  ]
}
"""
)


def ensemble_dir(repository, name, config):
    """An ensemble's directory: its configuration and an empty version 1."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(config)


@pytest.fixture
def repository(tmp_path):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    ensemble_dir(repository, "twice", TWICE)
    return repository


def wait_for_readiness(client, model, ready, server, timeout=20):
    """Waits (bounded) until `model` is ready, or not ready, as asked."""
    deadline = time.monotonic() + timeout
    while client.is_model_ready(model) != ready and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.is_model_ready(model) == ready, server.log


def pipeline_inputs(wire, a, b):
    return [wire.input("A", a, "INT32"), wire.input("B", b, "INT32")]


def test_the_pipeline_passes_its_tensors_from_step_to_step(launch_server, repository, protocol):
    server = launch_server(repository)
    with server.client(protocol) as client:
        wire = default_wire(client)
        assert client.is_model_ready("twice")
        assert model_metadata(client, "twice")["platform"] == "ensemble"
        assert model_config(client, "twice")["platform"] == "ensemble"
        simple_before = model_stats(client, "simple", "1")
        for batch, seed in ((1, 1), (5, 2)):
            a, b = simple_data(batch, seed=seed)
            result = wire.infer(client, "twice", pipeline_inputs(wire, a, b))
            np.testing.assert_array_equal(as_numpy(result, "TWICE_A"), 2 * a)
            np.testing.assert_array_equal(as_numpy(result, "TWICE_B"), 2 * b)
            # An intermediate tensor that is also an ensemble output.
            np.testing.assert_array_equal(as_numpy(result, "SUM"), a + b)
        # Asking for one output gives that one.
        a, b = simple_data(2, seed=3)
        only = wire.infer(client, "twice", pipeline_inputs(wire, a, b), outputs=wire.outputs("TWICE_B"))
        np.testing.assert_array_equal(as_numpy(only, "TWICE_B"), 2 * b)
        assert only.get_output("TWICE_A") is None

        ensemble = model_stats(client, "twice", "1")
        assert count(ensemble, "inference_stats", "success", "count") == 3
        assert count(ensemble, "inference_count") == 1 + 5 + 2
        assert count(ensemble, "execution_count") == 3
        assert count(ensemble, "inference_stats", "compute_infer", "ns") > 0
        simple_after = model_stats(client, "simple", "1")
        steps = count(simple_after, "inference_stats", "success", "count") - count(
            simple_before, "inference_stats", "success", "count"
        )
        assert steps == 6


def test_independent_steps_run_side_by_side_and_merge(launch_server, tmp_path):
    # Two steps on the same input, a third on both their outputs:
    # (a + b) + (a - b) = 2a and (a + b) - (a - b) = 2b again, the first
    # two steps taken together.
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    fan = (
        """name: "fan" platform: "ensemble" max_batch_size: 4
input [ { name: "A" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 16 ] } ]
ensemble_scheduling {
  step [
    { model_name: "simple" model_version: -1
      input_map { key: "INPUT0" value: "sum_a" } input_map { key: "INPUT1" value: "diff_b" }
      output_map { key: "OUTPUT0" value: "OUT" } },
    { model_name: "simple" model_version: -1
      input_map { key: "INPUT0" value: "A" } input_map { key: "INPUT1" value: "B" }
      output_map { key: "OUTPUT0" value: "sum_a" } },
    { model_name: "simple" model_version: -1
      input_map { key: "INPUT0" value: "A" } input_map { key: "INPUT1" value: "B" }
      output_map { key: "OUTPUT1" value: "diff_b" } }
  ]
}
"""
    )
    ensemble_dir(repository, "fan", fan)
    server = launch_server(repository)
    with server.client("grpc") as client:
        wire = default_wire(client)
        a, b = simple_data(4, seed=7)
        result = wire.infer(client, "fan", pipeline_inputs(wire, a, b))
        np.testing.assert_array_equal(as_numpy(result, "OUT"), 2 * a)


def test_request_errors_name_the_ensemble_and_its_inputs(launch_server, repository, protocol):
    server = launch_server(repository)
    with server.client(protocol) as client:
        wire = default_wire(client)
        a, b = simple_data(1)
        expect_error(
            client, lambda: wire.infer(client, "twice", [wire.input("A", a, "INT32")]), "INVALID_ARGUMENT", "twice", "B"
        )
        big_a, big_b = simple_data(9)
        expect_error(
            client,
            lambda: wire.infer(client, "twice", pipeline_inputs(wire, big_a, big_b)),
            "INVALID_ARGUMENT",
            "twice",
            "8",
        )


def test_an_ensemble_stops_serving_while_a_composing_model_is_unloaded(launch_server, repository, protocol):
    # As Triton's dependency graph does: the ensemble follows its composing
    # models, instead of serving requests that cannot run.
    server = launch_server(repository, extra=["--model-control-mode=explicit", "--load-model=*"])
    with server.client(protocol) as client:
        wire = default_wire(client)
        a, b = simple_data(1)
        client.unload_model("simple")
        assert not client.is_model_ready("twice")
        (row,) = [row for row in index_rows(client) if row["name"] == "twice"]
        assert row["state"] == "UNAVAILABLE" and "simple" in row["reason"], row
        expect_error(
            client, lambda: wire.infer(client, "twice", pipeline_inputs(wire, a, b)), "UNAVAILABLE", "twice", "simple"
        )
        client.load_model("simple")
        assert client.is_model_ready("twice")
        result = wire.infer(client, "twice", pipeline_inputs(wire, a, b))
        np.testing.assert_array_equal(as_numpy(result, "TWICE_A"), 2 * a)
    assert server.wait_for_line(r"loaded again: a model its steps run changed model=twice")


def test_a_step_that_fails_fails_the_request_and_counts_as_other(launch_server, tmp_path, protocol):
    # The ensemble takes any length; simple takes 16, so a request of 8
    # passes the ensemble's checks and fails in its first step.
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    ensemble_dir(repository, "twice", TWICE.replace("dims: [ 16 ]", "dims: [ -1 ]"))
    server = launch_server(repository)
    with server.client(protocol) as client:
        wire = default_wire(client)
        short = np.arange(8, dtype=np.int32).reshape(1, 8)
        expect_error(
            client,
            lambda: wire.infer(client, "twice", pipeline_inputs(wire, short, short)),
            "INVALID_ARGUMENT",
            "ensemble 'twice'",
            "INPUT0",
        )
        a, b = simple_data(1)
        np.testing.assert_array_equal(as_numpy(wire.infer(client, "twice", pipeline_inputs(wire, a, b)), "TWICE_A"), 2 * a)
        stats = model_stats(client, "twice", "1")
        assert count(stats, "inference_stats", "fail", "count") == 1
        assert count(stats, "inference_stats", "success", "count") == 1
    families = scrape(server.metrics_url)
    assert value(families, "nv_inference_request_failure", "twice", reason="OTHER") == 1


def test_loading_an_ensemble_loads_its_composing_models(launch_server, repository, protocol):
    at_start = launch_server(repository, extra=["--model-control-mode=explicit", "--load-model=twice"])
    with at_start.client(protocol) as client:
        assert client.is_model_ready("twice") and client.is_model_ready("simple")
    on_request = launch_server(repository, extra=["--model-control-mode=explicit"])
    with on_request.client(protocol) as client:
        assert not client.is_model_ready("simple")
        client.load_model("twice")
        assert client.is_model_ready("twice") and client.is_model_ready("simple")
        wire = default_wire(client)
        a, b = simple_data(3, seed=5)
        result = wire.infer(client, "twice", pipeline_inputs(wire, a, b))
        np.testing.assert_array_equal(as_numpy(result, "TWICE_B"), 2 * b)
    assert on_request.wait_for_line(r"loaded as a composing model model=simple ensemble=twice")


def test_unload_dependents_takes_along_the_composing_models_loaded_for_the_ensemble(launch_server, repository, protocol):
    server = launch_server(repository, extra=["--model-control-mode=explicit"])
    with server.client(protocol) as client:
        # Loaded for the ensemble, then unloaded with it.
        client.load_model("twice")
        client.unload_model("twice", unload_dependents=True)
        assert not client.is_model_ready("twice") and not client.is_model_ready("simple")
        # Without unload_dependents, the composing model stays.
        client.load_model("twice")
        client.unload_model("twice")
        assert client.is_model_ready("simple")
        # A composing model loaded on its own request stays too; and an
        # ensemble unloaded on request stays unloaded while its composing
        # model comes and goes.
        client.unload_model("simple")
        client.load_model("simple")
        assert not client.is_model_ready("twice")
        client.load_model("twice")
        client.unload_model("twice", unload_dependents=True)
        assert client.is_model_ready("simple") and not client.is_model_ready("twice")
    assert server.wait_for_line(r"unloaded with the ensemble it was loaded for model=simple ensemble=twice")


def test_an_ensemble_whose_composing_model_is_missing_does_not_load_on_request(launch_server, tmp_path, protocol):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    ensemble_dir(repository, "twice", TWICE.replace('model_name: "simple"\n      model_version: 1', 'model_name: "absent"\n      model_version: 1'))
    server = launch_server(repository, extra=["--model-control-mode=explicit"])
    with server.client(protocol) as client:
        expect_error(client, lambda: client.load_model("twice"), "INVALID_ARGUMENT", "twice", "absent")
        assert not client.is_model_ready("twice")


def test_mode_poll_loads_an_ensemble_added_with_its_composing_model(launch_server, tmp_path):
    # "a_twice" comes before "simple" in the repository; the composing model
    # must load first all the same.
    repository, staging = tmp_path / "models", tmp_path / "staging"
    repository.mkdir()
    copy_model(SIMPLE, staging)
    ensemble_dir(staging, "a_twice", TWICE.replace('name: "twice"', 'name: "a_twice"'))
    server = launch_server(repository, extra=["--model-control-mode=poll", "--repository-poll-secs=1"])
    # Moved in microseconds apart, so one poll almost always finds both
    # (and should one poll fall between them, `simple` is there first).
    (staging / "simple").rename(repository / "simple")
    (staging / "a_twice").rename(repository / "a_twice")
    with server.client("grpc") as client:
        wait_for_readiness(client, "a_twice", True, server)
        wire = default_wire(client)
        a, b = simple_data(2, seed=9)
        result = wire.infer(client, "a_twice", pipeline_inputs(wire, a, b))
        np.testing.assert_array_equal(as_numpy(result, "TWICE_A"), 2 * a)


def test_mode_poll_loads_a_waiting_ensemble_once_its_composing_model_arrives(launch_server, tmp_path):
    repository, staging = tmp_path / "models", tmp_path / "staging"
    repository.mkdir()
    copy_model(SIMPLE, staging)
    ensemble_dir(repository, "twice", TWICE)
    server = launch_server(
        repository, extra=["--model-control-mode=poll", "--repository-poll-secs=1", "--exit-on-error=false"], wait="loaded"
    )
    with server.client("grpc") as client:
        assert not client.is_model_ready("twice")
        # Only the composing model arrives; the ensemble's directory stays
        # as it was.
        (staging / "simple").rename(repository / "simple")
        wait_for_readiness(client, "twice", True, server)
        wire = default_wire(client)
        a, b = simple_data(1, seed=4)
        np.testing.assert_array_equal(as_numpy(wire.infer(client, "twice", pipeline_inputs(wire, a, b)), "TWICE_B"), 2 * b)
        # And when it leaves, the ensemble stops serving.
        shutil.rmtree(repository / "simple")
        wait_for_readiness(client, "twice", False, server)


# twice run on twice's outputs: 4a and 4b, an ensemble of ensembles.
QUAD = """name: "quad" platform: "ensemble" max_batch_size: 8
input [ { name: "A" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "B" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "QUAD_A" data_type: TYPE_INT32 dims: [ 16 ] }, { name: "QUAD_B" data_type: TYPE_INT32 dims: [ 16 ] } ]
ensemble_scheduling {
  step [
    { model_name: "twice" model_version: -1
      input_map { key: "A" value: "A" } input_map { key: "B" value: "B" }
      output_map { key: "TWICE_A" value: "ta" } output_map { key: "TWICE_B" value: "tb" } },
    { model_name: "twice" model_version: -1
      input_map { key: "A" value: "ta" } input_map { key: "B" value: "tb" }
      output_map { key: "TWICE_A" value: "QUAD_A" } output_map { key: "TWICE_B" value: "QUAD_B" } }
  ]
}
"""


def test_an_ensemble_of_ensembles_runs_the_inner_pipelines(launch_server, repository, protocol):
    ensemble_dir(repository, "quad", QUAD)
    server = launch_server(repository)
    with server.client(protocol) as client:
        wire = default_wire(client)
        for batch, seed in ((1, 6), (3, 7)):
            a, b = simple_data(batch, seed=seed)
            result = wire.infer(client, "quad", pipeline_inputs(wire, a, b))
            np.testing.assert_array_equal(as_numpy(result, "QUAD_A"), 4 * a)
            np.testing.assert_array_equal(as_numpy(result, "QUAD_B"), 4 * b)
        # Each quad request is two twice requests, each of those two of simple.
        assert count(model_stats(client, "quad", "1"), "inference_stats", "success", "count") == 2
        assert count(model_stats(client, "twice", "1"), "inference_stats", "success", "count") == 4
        assert count(model_stats(client, "simple", "1"), "inference_stats", "success", "count") == 8


def test_loading_a_nested_ensemble_loads_and_unloads_everything_below_it(launch_server, repository):
    ensemble_dir(repository, "quad", QUAD)
    server = launch_server(repository, extra=["--model-control-mode=explicit"])
    with server.client("grpc") as client:
        client.load_model("quad")
        assert all(client.is_model_ready(name) for name in ("quad", "twice", "simple"))
        client.unload_model("quad", unload_dependents=True)
        assert not any(client.is_model_ready(name) for name in ("quad", "twice", "simple"))
    # Named at start, it brings the same models.
    at_start = launch_server(repository, extra=["--model-control-mode=explicit", "--load-model=quad"])
    with at_start.client("grpc") as client:
        assert all(client.is_model_ready(name) for name in ("quad", "twice", "simple"))


def test_mode_poll_loads_nested_ensembles_in_order(launch_server, tmp_path):
    # "a_quad" sorts before "twice", which it runs.
    repository, staging = tmp_path / "models", tmp_path / "staging"
    repository.mkdir()
    copy_model(SIMPLE, staging)
    ensemble_dir(staging, "twice", TWICE)
    ensemble_dir(staging, "a_quad", QUAD.replace('name: "quad"', 'name: "a_quad"'))
    server = launch_server(repository, extra=["--model-control-mode=poll", "--repository-poll-secs=1"])
    for name in ("simple", "twice", "a_quad"):
        (staging / name).rename(repository / name)
    with server.client("grpc") as client:
        wait_for_readiness(client, "a_quad", True, server)
        wire = default_wire(client)
        a, b = simple_data(1, seed=8)
        np.testing.assert_array_equal(as_numpy(wire.infer(client, "a_quad", pipeline_inputs(wire, a, b)), "QUAD_B"), 4 * b)


def test_ensembles_that_run_each_other_are_refused_at_once(launch_server, tmp_path):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    for name, other in (("loop_a", "loop_b"), ("loop_b", "loop_a")):
        ensemble_dir(
            repository,
            name,
            TWICE.replace('name: "twice"', f'name: "{name}"').replace('model_name: "simple"\n      model_version: 1', f'model_name: "{other}"\n      model_version: -1').replace('key: "INPUT0" value: "SUM"', 'key: "A" value: "SUM"').replace('key: "INPUT1" value: "difference"', 'key: "B" value: "difference"').replace('key: "OUTPUT0" value: "TWICE_A"', 'key: "TWICE_A" value: "TWICE_A"').replace('key: "OUTPUT1" value: "TWICE_B"', 'key: "TWICE_B" value: "TWICE_B"'),
        )
    started = time.monotonic()
    server = launch_server(repository, extra=["--exit-on-error=false"], wait="loaded")
    # Refused before either waits for the other (which would take minutes).
    assert time.monotonic() - started < 20
    with server.client("grpc") as client:
        rows = {row["name"]: row for row in index_rows(client)}
    assert "the ensemble runs itself: loop_a -> loop_b -> loop_a" in rows["loop_a"]["reason"], rows
    assert "the ensemble runs itself: loop_b -> loop_a -> loop_b" in rows["loop_b"]["reason"], rows
    assert rows["simple"]["state"] == "READY"


BROKEN = [
    ("a missing composing model", TWICE.replace('model_name: "simple"\n      model_version: 1', 'model_name: "absent"\n      model_version: 1'), "absent"),
    ("an unknown model input", TWICE.replace('key: "INPUT1" value: "B"', 'key: "INPUT9" value: "B"'), "INPUT9"),
    ("an unmapped model input", TWICE.replace('      input_map { key: "INPUT1" value: "B" }\n', ""), "'INPUT1' is not mapped"),
    ("a datatype that does not match", TWICE.replace('name: "A" data_type: TYPE_INT32', 'name: "A" data_type: TYPE_FP32'), "FP32"),
    ("a larger batch than the composing model's", TWICE.replace("max_batch_size: 8", "max_batch_size: 16"), "up to 16"),
    ("an ensemble output no step makes", TWICE.replace('value: "TWICE_B"', 'value: "other"'), "'TWICE_B' is not the output"),
]


@pytest.mark.parametrize("why, config, fragment", BROKEN, ids=[case[0] for case in BROKEN])
def test_a_broken_pipeline_fails_to_load_and_says_why(launch_server, tmp_path, why, config, fragment):
    repository = tmp_path / "models"
    copy_model(SIMPLE, repository)
    ensemble_dir(repository, "twice", config)
    server = launch_server(repository, extra=["--exit-on-error=false", "--strict-readiness=false"])
    with server.client("http") as client:
        assert client.is_model_ready("simple")
        assert not client.is_model_ready("twice")
        (row,) = [row for row in client.get_model_repository_index() if row["name"] == "twice"]
        assert row["state"] == "UNAVAILABLE"
        assert fragment in row["reason"], row["reason"]
