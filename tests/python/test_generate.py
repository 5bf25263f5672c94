"""Triton's generate extension over HTTP: a flat JSON object whose members
are the model's inputs (a value or a flat list, shaped from the model's
metadata), its request id and parameters, answered with one flat object of
outputs; generate_stream sends it as a server-sent event. Requests go
through curl and the standard library, as a user of the endpoint sends
them."""

import json

from http_requests import SIMPLE_A, SIMPLE_B, curl, expect_error_response, post


def test_generate_takes_inputs_by_name_and_answers_outputs_by_name(http_url):
    body = {"INPUT0": SIMPLE_A, "INPUT1": SIMPLE_B, "id": "g-1", "parameters": {"temperature": 0.5}}
    response = curl(http_url, "/v2/models/simple/generate", data=json.dumps(body))
    assert response.status == 200 and response.headers["content-type"] == "application/json", response
    answer = response.json()
    assert answer["id"] == "g-1"
    assert (answer["model_name"], answer["model_version"]) == ("simple", "1")
    assert answer["OUTPUT0"] == [a + b for a, b in zip(SIMPLE_A, SIMPLE_B)]
    assert answer["OUTPUT1"] == [a - b for a, b in zip(SIMPLE_A, SIMPLE_B)]
    # A version in the path, and a one-element output unwrapped from its list.
    response = post(http_url, "/v2/models/identity_fp32/versions/1/generate", {"INPUT0": 2.5})
    assert response.status == 200, response.body
    assert response.json() == {"model_name": "identity_fp32", "model_version": "1", "OUTPUT0": 2.5}


def test_generate_stream_sends_the_answer_as_an_event(http_url):
    body = {"INPUT0": ["hello"]}
    response = curl(http_url, "/v2/models/identity_bytes/generate_stream", data=json.dumps(body))
    assert response.status == 200, response
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    text = response.body.decode()
    assert text.startswith("data: ") and text.endswith("\n\n"), text
    assert json.loads(text[len("data: ") :]) == {"model_name": "identity_bytes", "model_version": "1", "OUTPUT0": "hello"}


def test_generate_errors_name_the_model_and_the_input(http_url):
    cases = [
        ("simple", {"INPUT0": [1, 2, 3], "INPUT1": SIMPLE_B}, 400, "input 'INPUT0': 3 elements do not fill its shape [-1,16]"),
        ("simple", {"INPUT0": SIMPLE_A, "INPUT1": SIMPLE_B, "extra": [1]}, 400, "'extra' is not an input"),
        ("simple", {"INPUT0": SIMPLE_A}, 400, "INPUT1"),
        ("absent", {"INPUT0": 1}, 404, "absent"),
    ]
    for model, body, status, fragment in cases:
        expect_error_response(post(http_url, f"/v2/models/{model}/generate", body), status, fragment)
    # A failure of the inference itself comes in the stream, with its status.
    response = post(http_url, "/v2/models/simple/generate_stream", {"INPUT0": SIMPLE_A})
    assert response.status == 400 and response.headers["content-type"].startswith("text/event-stream"), response
    assert "INPUT1" in json.loads(response.body.decode()[len("data: ") :])["error"]
