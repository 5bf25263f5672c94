"""Custom ONNX Runtime operators, as Triton loads them: a configuration's
`model_operations { op_library_filename: [...] }` names libraries that
register operators ONNX Runtime lacks. `custom_double.onnx` needs `Double`
of the domain `tritonrs.test`, which only tests/custom_op_library (built
as `target/debug/examples/libcustom_op_library.so`) provides."""

import shutil

import numpy as np
import pytest

from model_requests import default_wire
from protocols import as_numpy, expect_error, model_metadata
from server_process import REPO_ROOT

LIBRARY = REPO_ROOT / "target" / "debug" / "examples" / "libcustom_op_library.so"
MODEL = REPO_ROOT / "tests" / "custom_op_library" / "custom_double.onnx"

TENSORS = """
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""


def model_dir(repository, name, config):
    (repository / name / "1").mkdir(parents=True)
    shutil.copy(MODEL, repository / name / "1" / "model.onnx")
    (repository / name / "config.pbtxt").write_text(config)


@pytest.fixture(scope="module", autouse=True)
def library():
    assert LIBRARY.is_file(), f"build it first: cargo build --example custom_op_library ({LIBRARY} is missing)"


def test_a_model_of_custom_operators_runs_with_their_library(launch_server, protocol, tmp_path):
    operations = f'model_operations {{ op_library_filename: [ "{LIBRARY}" ] }}\n'
    model_dir(tmp_path, "double", TENSORS + operations)
    # Without inputs and outputs in its configuration, auto-complete reads
    # them from the model, which needs the library too.
    model_dir(tmp_path, "double_completed", operations)
    model_dir(tmp_path, "double_without_library", TENSORS)
    server = launch_server(tmp_path, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        wire = default_wire(client)
        values = np.array([[1.5, -2.0, 0.25], [4.0, 8.0, -16.0]], dtype=np.float32)
        for model in ("double", "double_completed"):
            result = wire.infer(client, model, [wire.input("INPUT", values)])
            np.testing.assert_array_equal(as_numpy(result, "OUTPUT"), 2 * values)
        assert [output["name"] for output in model_metadata(client, "double_completed")["outputs"]] == ["OUTPUT"]
        expect_error(
            client, lambda: model_metadata(client, "double_without_library"), "UNAVAILABLE", "Double", "tritonrs.test"
        )


def test_a_library_that_cannot_be_opened_fails_the_load_and_says_which(launch_server, protocol, tmp_path):
    missing = tmp_path / "libmissing.so"
    model_dir(tmp_path, "double", TENSORS + f'model_operations {{ op_library_filename: [ "{missing}" ] }}\n')
    server = launch_server(tmp_path, extra=["--exit-on-error=false"], wait="loaded")
    with server.client(protocol) as client:
        expect_error(client, lambda: model_metadata(client, "double"), "UNAVAILABLE", "libmissing.so")
