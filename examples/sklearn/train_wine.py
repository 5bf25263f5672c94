#!/usr/bin/env python3
"""Trains a wine classifier on scikit-learn's bundled wine data, converts it
to ONNX with skl2onnx, and writes a Triton model repository for it.

    python examples/sklearn/train_wine.py [--out examples/sklearn/model_repository]

The model `wine` takes FP32 `input` rows of the 13 wine measurements and
returns `label` (the cultivar, 0 to 2) and `probabilities` (one per
cultivar). A few held-out rows and scikit-learn's own answers for them are
saved to `wine_samples.json` beside the repository, to check the server
against.
"""

import argparse
import json
import pathlib

import numpy as np
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = pathlib.Path(__file__).resolve().parent

CONFIG = """\
# The wine classifier from examples/sklearn/train_wine.py.
name: "wine"
backend: "onnxruntime"
max_batch_size: 32
input [
  { name: "input" data_type: TYPE_FP32 dims: [ 13 ] }
]
output [
  # skl2onnx gives one label per row; the configuration shows it as [1].
  { name: "label" data_type: TYPE_INT64 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "probabilities" data_type: TYPE_FP32 dims: [ 3 ] }
]
dynamic_batching { }
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "model_repository")
    args = parser.parse_args()

    features, cultivars = load_wine(return_X_y=True)
    features = features.astype(np.float32)
    train_x, test_x, train_y, test_y = train_test_split(features, cultivars, test_size=0.2, random_state=0)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(train_x, train_y)

    # Without ZipMap the probabilities are a plain tensor, which the KServe
    # protocol can carry (a list of maps it cannot).
    onnx_model = to_onnx(
        classifier,
        initial_types=[("input", FloatTensorType([None, features.shape[1]]))],
        options={"zipmap": False},
        target_opset=17,
    )
    model_dir = args.out / "wine"
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "model.onnx").write_bytes(onnx_model.SerializeToString())
    (model_dir / "config.pbtxt").write_text(CONFIG)

    samples = test_x[:5]
    expected = {
        "instances": samples.tolist(),
        "labels": classifier.predict(samples).tolist(),
        "probabilities": classifier.predict_proba(samples).tolist(),
    }
    (args.out.parent / "wine_samples.json").write_text(json.dumps(expected, indent=1))
    print(f"wrote {model_dir} (held-out accuracy {classifier.score(test_x, test_y):.2f})")


if __name__ == "__main__":
    main()
