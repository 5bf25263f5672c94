#!/usr/bin/env python3
"""Asks a running server for predictions with Triton's Python client, over
HTTP and gRPC:

    python examples/sklearn/query_tritonclient.py [--http localhost:8000] [--grpc localhost:8001]

With --samples DIR (where the training scripts wrote wine_samples.json and
review_samples.json), it also checks the answers against scikit-learn's.
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

WINE_ROWS = np.array(
    [[14.23, 1.71, 2.43, 15.6, 127.0, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065.0]], dtype=np.float32
)
REVIEWS = np.array([["great quality, works perfectly"], ["terrible, it broke and never worked"]], dtype=object)


def ask(module, client, model, name, data, datatype):
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    result = client.infer(model, [tensor])
    return result.as_numpy("label").reshape(-1), result.as_numpy("probabilities")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", default="localhost:8000")
    parser.add_argument("--grpc", default="localhost:8001")
    parser.add_argument("--samples", type=pathlib.Path, help="check against the training scripts' samples")
    args = parser.parse_args()

    wine_rows, reviews = WINE_ROWS, REVIEWS
    expected = None
    if args.samples:
        wine = json.loads((args.samples / "wine_samples.json").read_text())
        review = json.loads((args.samples / "review_samples.json").read_text())
        wine_rows = np.array(wine["instances"], dtype=np.float32)
        reviews = np.array(review["instances"], dtype=object)
        expected = (wine, review)

    for module, client in (
        (httpclient, httpclient.InferenceServerClient(args.http)),
        (grpcclient, grpcclient.InferenceServerClient(args.grpc)),
    ):
        protocol = module.__name__.rsplit(".", 1)[-1]
        wine_labels, wine_probabilities = ask(module, client, "wine", "input", wine_rows, "FP32")
        review_labels, review_probabilities = ask(module, client, "review_sentiment", "text", reviews, "BYTES")
        print(f"{protocol}: wine cultivars {wine_labels.tolist()}, reviews {[label.decode() for label in review_labels]}")
        if expected is not None:
            wine, review = expected
            assert wine_labels.tolist() == wine["labels"], (wine_labels, wine["labels"])
            np.testing.assert_allclose(wine_probabilities, wine["probabilities"], atol=1e-5)
            assert [label.decode() for label in review_labels] == review["labels"]
            np.testing.assert_allclose(review_probabilities, review["probabilities"], atol=1e-5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
