"""Triton's `--model-namespacing`: two repositories each hold a model named
`composing` (an ensemble of `simple`: add/sub in one, sub/add in the other)
and an ensemble that runs `composing`. With namespacing both `composing`
models load, each ensemble runs its own repository's, a request naming
`composing` is refused as ambiguous, and the metrics carry each model's
repository as its `namespace`; as the repositories change (mode `poll`) or
models are loaded by name (mode `explicit`), the names resolve again."""

import shutil

import numpy as np
import pytest

from model_requests import default_wire, simple_data, simple_inputs
from protocols import as_numpy, expect_error
from server_process import EXAMPLE_MODELS, copy_model, wait_until
from test_ensembles import ensemble_dir
from test_metrics import scrape, value
from test_model_repository import index_of


def passthrough(name, step_model, first, second):
    """An ensemble with simple's inputs and outputs whose one step runs
    `step_model` and gives its `first` and `second` outputs as OUTPUT0 and
    OUTPUT1."""
    return f"""name: "{name}" platform: "ensemble" max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }}, {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }}, {{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }} ]
ensemble_scheduling {{ step [ {{ model_name: "{step_model}" model_version: -1
  input_map {{ key: "INPUT0" value: "INPUT0" }} input_map {{ key: "INPUT1" value: "INPUT1" }}
  output_map {{ key: "{first}" value: "OUTPUT0" }} output_map {{ key: "{second}" value: "OUTPUT1" }} }} ] }}
"""


@pytest.fixture
def repositories(tmp_path):
    """addsub/: simple, composing (add, sub), pipeline_addsub; subadd/:
    composing (sub, add), pipeline_subadd."""
    addsub, subadd = tmp_path / "addsub", tmp_path / "subadd"
    copy_model(EXAMPLE_MODELS / "simple", addsub)
    ensemble_dir(addsub, "composing", passthrough("composing", "simple", "OUTPUT0", "OUTPUT1"))
    ensemble_dir(subadd, "composing", passthrough("composing", "simple", "OUTPUT1", "OUTPUT0"))
    ensemble_dir(addsub, "pipeline_addsub", passthrough("pipeline_addsub", "composing", "OUTPUT0", "OUTPUT1"))
    ensemble_dir(subadd, "pipeline_subadd", passthrough("pipeline_subadd", "composing", "OUTPUT0", "OUTPUT1"))
    return addsub, subadd


def outputs_of(client, model):
    """`model`'s OUTPUT0 and OUTPUT1 as "add" or "sub", for inputs a and b."""
    wire = default_wire(client)
    a, b = simple_data(1, seed=4)
    result = wire.infer(client, model, simple_inputs(a, b, wire))
    named = {"add": a + b, "sub": a - b}
    found = []
    for output in ("OUTPUT0", "OUTPUT1"):
        data = as_numpy(result, output)
        found.append(next(name for name, expected in named.items() if np.array_equal(data, expected)))
    return tuple(found)


def states(client, model):
    """(version, state) of each repository index row of `model`."""
    return [(row["version"], row["state"]) for row in index_of(client, model)]


def expect_ambiguous(client, model):
    return expect_error(client, lambda: outputs_of(client, model), "INVALID_ARGUMENT", f"'{model}'", "ambiguity")


def test_each_ensemble_runs_its_own_repositorys_model(launch_server, repositories, protocol):
    addsub, subadd = repositories
    server = launch_server(addsub, subadd, extra=["--model-namespacing=true"])
    with server.client(protocol) as client:
        assert client.is_server_ready()
        assert outputs_of(client, "pipeline_addsub") == ("add", "sub")
        assert outputs_of(client, "pipeline_subadd") == ("sub", "add")
        assert outputs_of(client, "simple") == ("add", "sub")
        message = expect_ambiguous(client, "composing")
        assert str(addsub) in message and str(subadd) in message
        assert states(client, "composing") == [("1", "READY"), ("1", "READY")]
    families = scrape(server.metrics_url)
    for repository in (addsub, subadd):
        # Each composing model ran once, for its repository's pipeline.
        assert value(families, "nv_inference_count", "composing", namespace=str(repository)) == 1


def test_without_namespacing_a_shared_name_does_not_load(launch_server, repositories, protocol):
    server = launch_server(*repositories, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        expect_error(client, lambda: outputs_of(client, "composing"), "UNAVAILABLE", "more than one repository")
        assert client.is_model_ready("pipeline_addsub") is False
        assert outputs_of(client, "simple") == ("add", "sub")
    families = scrape(server.metrics_url)
    assert not [labels for _, samples in families.values() for labels in samples if "namespace" in dict(labels)]


def test_in_mode_poll_the_names_resolve_again_as_the_repositories_change(launch_server, repositories, tmp_path):
    addsub, subadd = repositories
    server = launch_server(
        addsub, subadd, extra=["--model-namespacing=true", "--model-control-mode=poll", "--repository-poll-secs=1"]
    )
    aside = tmp_path / "aside"
    with server.client("grpc") as client:
        assert outputs_of(client, "pipeline_addsub") == ("add", "sub")
        # Without addsub's own `composing`, the name is subadd's alone: both
        # pipelines run it, and so may clients.
        shutil.move(addsub / "composing", aside)

        def resolved_to_subadd():
            try:
                return outputs_of(client, "pipeline_addsub") == ("sub", "add")
            except Exception:  # the pipeline reloads meanwhile
                return False

        wait_until(resolved_to_subadd, "pipeline_addsub runs subadd's composing")
        assert outputs_of(client, "composing") == ("sub", "add")
        assert outputs_of(client, "pipeline_subadd") == ("sub", "add")
        # Back again: each pipeline runs its own, and the name is ambiguous.
        shutil.move(aside, addsub / "composing")

        def resolved_to_addsub():
            try:
                return outputs_of(client, "pipeline_addsub") == ("add", "sub")
            except Exception:
                return False

        wait_until(resolved_to_addsub, "pipeline_addsub runs its own composing again")
        assert outputs_of(client, "pipeline_subadd") == ("sub", "add")
        expect_ambiguous(client, "composing")


def test_in_mode_explicit_a_shared_name_loads_and_unloads_every_model_of_it(launch_server, repositories, protocol):
    addsub, subadd = repositories
    server = launch_server(addsub, subadd, extra=["--model-namespacing=true", "--model-control-mode=explicit"])
    with server.client(protocol) as client:
        # Loading an ensemble loads its own repository's composing model.
        client.load_model("pipeline_subadd")
        assert outputs_of(client, "pipeline_subadd") == ("sub", "add")
        assert outputs_of(client, "composing") == ("sub", "add")
        # Loading the shared name loads the other repository's too.
        client.load_model("composing")
        expect_ambiguous(client, "composing")
        assert states(client, "composing") == [("1", "READY"), ("1", "READY")]
        client.unload_model("composing")
        assert states(client, "composing") == [("1", "UNAVAILABLE"), ("1", "UNAVAILABLE")]
        assert client.is_model_ready("pipeline_subadd") is False
