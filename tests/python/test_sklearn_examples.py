"""examples/sklearn end to end: train both models, serve the repository the
scripts write, and query it the three ways the example shows (the /predict
instances form with curl, tritonclient over HTTP and gRPC), comparing the
answers with scikit-learn's own."""

import json
import subprocess
import sys

import pytest

from http_requests import post
from server_process import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "sklearn"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The examples' model repository and samples, written to a temporary folder."""
    folder = tmp_path_factory.mktemp("sklearn")
    for script in ("train_wine.py", "train_text_classifier.py"):
        subprocess.run(
            [sys.executable, str(EXAMPLE / script), "--out", str(folder / "model_repository")],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return folder


@pytest.fixture
def served(launch_server, trained):
    return launch_server(trained / "model_repository")


def test_predict_with_instances_matches_scikit_learn(served, trained):
    for model, samples in (("wine", "wine_samples.json"), ("review_sentiment", "review_samples.json")):
        expected = json.loads((trained / samples).read_text())
        response = post(served.http_url, "/predict", {"instances": expected["instances"]}, {"model_name": model})
        assert response.status == 200, response.body[:500]
        predictions = response.json()["predictions"]
        assert [prediction["label"] for prediction in predictions] == [[label] for label in expected["labels"]]
        for prediction, probabilities in zip(predictions, expected["probabilities"]):
            assert prediction["probabilities"] == pytest.approx(probabilities, abs=1e-5)


def test_curl_script(served):
    finished = subprocess.run(
        ["sh", str(EXAMPLE / "query.sh"), served.http_url], capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    wine, reviews = (json.loads(line) for line in finished.stdout.splitlines() if line.strip())
    # The first row of scikit-learn's wine data is cultivar 0.
    assert wine["predictions"][0]["label"] == [0]
    assert [prediction["label"] for prediction in reviews["predictions"]] == [["positive"], ["negative"]]


def test_tritonclient_script_over_both_protocols(served, trained):
    finished = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "query_tritonclient.py"),
            "--http",
            served.http_url,
            "--grpc",
            served.grpc_url,
            "--samples",
            str(trained),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "http: wine cultivars" in finished.stdout and "grpc: wine cultivars" in finished.stdout
