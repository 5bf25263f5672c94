#!/usr/bin/env python3
"""Trains a small text classifier (TF-IDF features and logistic
regression) on a handful of product reviews, converts it to ONNX with
skl2onnx, and writes a Triton model repository for it.

    python examples/sklearn/train_text_classifier.py [--out examples/sklearn/model_repository]

The model `review_sentiment` takes a BYTES `text` tensor of raw strings,
one review per row, and returns `label` ("negative" or "positive") and
`probabilities`. The tokenizing happens inside the ONNX graph, so clients
send plain text.
"""

import argparse
import json
import pathlib

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

HERE = pathlib.Path(__file__).resolve().parent

REVIEWS = [
    ("works great and arrived early", "positive"),
    ("excellent quality, would buy again", "positive"),
    ("love it, my family loves it too", "positive"),
    ("great value for the price", "positive"),
    ("the battery lasts all week, great", "positive"),
    ("easy to set up and works perfectly", "positive"),
    ("sturdy, well made and beautiful", "positive"),
    ("fantastic sound and great design", "positive"),
    ("happy with this purchase, excellent", "positive"),
    ("perfect fit and works as described", "positive"),
    ("broke after two days, terrible", "negative"),
    ("poor quality and it arrived late", "negative"),
    ("does not work, waste of money", "negative"),
    ("terrible support, never again", "negative"),
    ("the battery died in an hour, awful", "negative"),
    ("cheap plastic, broke immediately", "negative"),
    ("stopped working after a week, poor", "negative"),
    ("awful smell and it does not fit", "negative"),
    ("disappointed, the screen cracked", "negative"),
    ("returned it, it never worked", "negative"),
]

CONFIG = """\
# The review classifier from examples/sklearn/train_text_classifier.py.
name: "review_sentiment"
backend: "onnxruntime"
max_batch_size: 32
input [
  { name: "text" data_type: TYPE_STRING dims: [ 1 ] }
]
output [
  { name: "label" data_type: TYPE_STRING dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 2 ] }
]
dynamic_batching { }
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "model_repository")
    args = parser.parse_args()

    texts = [text for text, _ in REVIEWS]
    labels = [label for _, label in REVIEWS]
    classifier = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0))
    classifier.fit(texts, labels)

    onnx_model = to_onnx(
        classifier,
        initial_types=[("text", StringTensorType([None, 1]))],
        # ONNX Runtime lower-cases text in the locale the graph names, and
        # the slim container images have only C.UTF-8 (skl2onnx's default,
        # en_US.UTF-8, is missing there).
        options={LogisticRegression: {"zipmap": False}, TfidfVectorizer: {"locale": "C.UTF-8"}},
        target_opset=17,
    )
    model_dir = args.out / "review_sentiment"
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (model_dir / "config.pbtxt").write_text(CONFIG)

    samples = ["great quality, works perfectly", "terrible, it broke and never worked"]
    expected = {
        "instances": [[sample] for sample in samples],
        "labels": classifier.predict(samples).tolist(),
        "probabilities": np.round(classifier.predict_proba(samples), 6).tolist(),
    }
    (args.out.parent / "review_samples.json").write_text(json.dumps(expected, indent=1))
    print(f"wrote {model_dir}")


if __name__ == "__main__":
    main()
