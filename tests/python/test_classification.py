"""Triton's classification extension through tritonclient: an output asked
for with `class_count` comes back as each batch item's highest classes,
"<value>:<index>[:<label>]" strings with labels from the output's
label_filename, over gRPC and HTTP (binary and JSON outputs)."""

import numpy as np
import pytest

from model_requests import assert_simple_works
from protocols import GRPC, HTTP, HTTP_JSON, as_numpy, expect_error

# tests/model_repository/classifier/labels.txt labels classes 0 to 2; class
# 3 has no label.
SCORES = np.array([[0.1, 0.7, 0.2, 0.9], [5.0, 1.0, 3.0, 4.0]], dtype=np.float32)


@pytest.mark.wires(GRPC, HTTP, HTTP_JSON)
def test_outputs_come_back_as_their_highest_classes_with_labels(client, wire):
    outputs = wire.outputs("OUTPUT0", class_count=2)
    result = wire.infer(client, "classifier", [wire.input("INPUT0", SCORES)], outputs=outputs)
    classes = as_numpy(result, "OUTPUT0")
    assert classes.shape == (2, 2)
    assert classes.tolist() == [[b"0.900000:3", b"0.700000:1:dog"], [b"5.000000:0:cat", b"4.000000:3"]]


@pytest.mark.wires(GRPC, HTTP)
def test_a_count_above_the_classes_returns_every_class_and_other_outputs_stay_raw(client, wire):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    outputs = [*wire.outputs("OUTPUT0", class_count=20), *wire.outputs("OUTPUT1")]
    inputs = [wire.input("INPUT0", a), wire.input("INPUT1", b)]
    result = wire.infer(client, "simple", inputs, outputs=outputs)
    classes = as_numpy(result, "OUTPUT0")
    # simple has no labels; OUTPUT0 = a + b holds 3 to 18, highest first.
    assert classes.shape == (1, 16)
    assert classes[0].tolist() == [f"{value + 3}:{value}".encode() for value in range(15, -1, -1)]
    np.testing.assert_array_equal(as_numpy(result, "OUTPUT1"), a - b)


@pytest.mark.wires(GRPC, HTTP)
def test_outputs_that_cannot_be_classified_are_refused_before_running(client, wire):
    data = np.ones((1, 4), dtype=np.float16)
    outputs = wire.outputs("OUTPUT", class_count=1)
    expect_error(
        client,
        lambda: wire.infer(client, "scale_fp16", [wire.input("INPUT", data)], outputs=outputs),
        "INVALID_ARGUMENT",
        "scale_fp16",
        "OUTPUT",
        "class result not available for datatype FP16",
    )
    assert_simple_works(client)
