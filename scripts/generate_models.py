#!/usr/bin/env python3
"""Writes the ONNX models of the example and test model repositories.

The models are tiny graphs built with `onnx.helper`, so they are committed
together with this script; `--check` rebuilds them in a temporary folder and
fails if any committed file differs, which keeps the two in step.

    python scripts/generate_models.py            # rewrite the committed models
    python scripts/generate_models.py --check    # verify them (CI)
"""

import argparse
import filecmp
import pathlib
import sys
import tempfile

import onnx
from onnx import TensorProto, helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "model_repository"
TEST_MODELS = ROOT / "tests" / "model_repository"
# Beside the custom operator library it needs, out of the repository that
# the shared test server loads (it cannot load without the library).
CUSTOM_OP_MODELS = ROOT / "tests" / "custom_op_library"

OPSET = 17
IR_VERSION = 8

# Triton datatype name -> ONNX element type, for the identity test models.
IDENTITY_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "BF16": TensorProto.BFLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def save(graph, path: pathlib.Path, extra_opsets=()) -> None:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), *extra_opsets],
        producer_name="tritonrs-generate-models",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString(deterministic=True))


def tensor(name, elem_type, shape):
    return helper.make_tensor_value_info(name, elem_type, shape)


def simple(path):
    """INT32 [batch, 16] INPUT0, INPUT1 -> OUTPUT0 = sum, OUTPUT1 = difference."""
    dims = ["batch", 16]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [tensor("INPUT0", TensorProto.INT32, dims), tensor("INPUT1", TensorProto.INT32, dims)],
        [tensor("OUTPUT0", TensorProto.INT32, dims), tensor("OUTPUT1", TensorProto.INT32, dims)],
    )
    save(graph, path)


def simple_string(path):
    """The BYTES twin of `simple`: decimal strings in, decimal strings out."""
    dims = ["batch", 16]
    string, int32 = TensorProto.STRING, TensorProto.INT32
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["INPUT0"], ["a"], to=int32),
            helper.make_node("Cast", ["INPUT1"], ["b"], to=int32),
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["difference"]),
            helper.make_node("Cast", ["sum"], ["OUTPUT0"], to=string),
            helper.make_node("Cast", ["difference"], ["OUTPUT1"], to=string),
        ],
        "simple_string",
        [tensor("INPUT0", string, dims), tensor("INPUT1", string, dims)],
        [tensor("OUTPUT0", string, dims), tensor("OUTPUT1", string, dims)],
    )
    save(graph, path)


def scale_fp16(path):
    """FP16 [batch, 4] INPUT -> OUTPUT = INPUT * 0.5; served without a config.pbtxt."""
    dims = ["batch", 4]
    half = helper.make_tensor("half", TensorProto.FLOAT16, [], [0.5])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["INPUT", "half"], ["OUTPUT"])],
        "scale_fp16",
        [tensor("INPUT", TensorProto.FLOAT16, dims)],
        [tensor("OUTPUT", TensorProto.FLOAT16, dims)],
        initializer=[half],
    )
    save(graph, path)


def identity(path, elem_type):
    """[batch, -1] INPUT0 -> OUTPUT0, unchanged: one per datatype."""
    dims = ["batch", "n"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [tensor("INPUT0", elem_type, dims)],
        [tensor("OUTPUT0", elem_type, dims)],
    )
    save(graph, path)


def counting_loop_body():
    """A Loop body that adds one to an INT64 [1] counter per iteration."""
    int64 = TensorProto.INT64
    return helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["count_in", "one"], ["count_out"]),
        ],
        "body",
        [tensor("i", int64, []), tensor("cond_in", TensorProto.BOOL, []), tensor("count_in", int64, [1])],
        [tensor("cond_out", TensorProto.BOOL, []), tensor("count_out", int64, [1])],
        initializer=[helper.make_tensor("one", int64, [1], [1])],
    )


def loop_start():
    """The Loop's first condition (true) and counter (0)."""
    return [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("true", TensorProto.BOOL, [], [True]),
    ]


def busy_loop(path):
    """INT64 [1] ITERATIONS -> INT64 [1] COUNT after that many loop steps.

    Its run time grows with ITERATIONS, so tests can hold one model busy for
    a chosen time and show that other models are not delayed.
    """
    int64 = TensorProto.INT64
    graph = helper.make_graph(
        [
            helper.make_node("Squeeze", ["ITERATIONS"], ["trip_count"]),
            helper.make_node("Loop", ["trip_count", "true", "zero"], ["COUNT"], body=counting_loop_body()),
        ],
        "busy_loop",
        [tensor("ITERATIONS", int64, [1])],
        [tensor("COUNT", int64, [1])],
        initializer=loop_start(),
    )
    save(graph, path)


def batch_busy_loop(path):
    """INT64 [batch, 1] ITERATIONS and FP32 [batch, n] PAYLOAD -> COUNT equal
    to ITERATIONS and PAYLOAD_OUT equal to PAYLOAD, after looping as many
    times as the largest ITERATIONS of the batch.

    A batchable model whose run time the test chooses: the scheduling tests
    keep its instance busy while requests pile up in the queue, and tell
    batches apart by their PAYLOAD widths.
    """
    int64 = TensorProto.INT64
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["ITERATIONS"], ["trip_count"], keepdims=0),
            helper.make_node("Loop", ["trip_count", "true", "zero"], ["steps"], body=counting_loop_body()),
            # COUNT = ITERATIONS + (steps - trip_count): equal to ITERATIONS,
            # but only once the loop has run.
            helper.make_node("Sub", ["steps", "trip_count"], ["nothing"]),
            helper.make_node("Add", ["ITERATIONS", "nothing"], ["COUNT"]),
            helper.make_node("Identity", ["PAYLOAD"], ["PAYLOAD_OUT"]),
        ],
        "batch_busy_loop",
        [tensor("ITERATIONS", int64, ["batch", 1]), tensor("PAYLOAD", TensorProto.FLOAT, ["batch", "n"])],
        [tensor("COUNT", int64, ["batch", 1]), tensor("PAYLOAD_OUT", TensorProto.FLOAT, ["batch", "n"])],
        initializer=loop_start(),
    )
    save(graph, path)


def sequence_accumulator(path):
    """A stateful model for the sequence batcher: OUTPUT (and the implicit
    state OUT_STATE) = INPUT on a sequence's START, else IN_STATE + INPUT;
    SEQUENCE echoes the CORRID control input. All INT32 [batch, 1] except
    CORRID and SEQUENCE (UINT64)."""
    dims = ["batch", 1]
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["ONE", "START"], ["KEEP"]),
            helper.make_node("Mul", ["IN_STATE", "KEEP"], ["CARRIED"]),
            helper.make_node("Add", ["INPUT", "CARRIED"], ["OUT_STATE"]),
            helper.make_node("Identity", ["OUT_STATE"], ["OUTPUT"]),
            helper.make_node("Identity", ["CORRID"], ["SEQUENCE"]),
        ],
        "sequence_accumulator",
        [
            tensor("INPUT", TensorProto.INT32, dims),
            tensor("START", TensorProto.INT32, dims),
            tensor("CORRID", TensorProto.UINT64, dims),
            tensor("IN_STATE", TensorProto.INT32, dims),
        ],
        [
            tensor("OUTPUT", TensorProto.INT32, dims),
            tensor("SEQUENCE", TensorProto.UINT64, dims),
            tensor("OUT_STATE", TensorProto.INT32, dims),
        ],
        initializer=[helper.make_tensor("ONE", TensorProto.INT32, [], [1])],
    )
    save(graph, path)


def ragged_sum(path):
    """A model for ragged batching: INPUT is FP32 [-1], every request's
    elements one request after the other, and the batch inputs the server
    computes from it come in as BOUNDS (accumulated element counts with a
    leading 0), COUNTS, ENDS, LONGEST (its shape is the longest request's
    element count), ITEM_SHAPES and FLAT_SHAPES. SUM is each request's sum
    of elements, computed from BOUNDS; COUNT, END, LONGEST_COUNT, ITEM_SHAPE
    and FLAT_SHAPE echo the batch inputs one row per request, so the tests
    read what the server computed; DOUBLED is INPUT * 2, flat, for the
    server to cut per request after each request's INPUT shape."""
    fp32, int32, int64 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64
    rows = ["requests", 1]
    graph = helper.make_graph(
        [
            # prefix[k] is the sum of the first k elements.
            helper.make_node("Concat", ["ZERO", "INPUT"], ["padded"], axis=0),
            helper.make_node("CumSum", ["padded", "AXIS0"], ["prefix"]),
            helper.make_node("Slice", ["BOUNDS", "FIRST", "BEFORE_LAST"], ["starts"]),
            helper.make_node("Slice", ["BOUNDS", "SECOND", "END_OF_ALL"], ["ends"]),
            helper.make_node("Gather", ["prefix", "starts"], ["before"]),
            helper.make_node("Gather", ["prefix", "ends"], ["through"]),
            helper.make_node("Sub", ["through", "before"], ["sums"]),
            helper.make_node("Unsqueeze", ["sums", "AXIS1"], ["SUM"]),
            helper.make_node("Unsqueeze", ["COUNTS", "AXIS1"], ["COUNT"]),
            helper.make_node("Unsqueeze", ["ENDS", "AXIS1"], ["END"]),
            helper.make_node("Shape", ["LONGEST"], ["longest"]),
            helper.make_node("Shape", ["COUNTS"], ["requests"]),
            helper.make_node("Concat", ["requests", "ONE64"], ["per_request"], axis=0),
            helper.make_node("Expand", ["longest", "per_request"], ["LONGEST_COUNT"]),
            helper.make_node("Identity", ["ITEM_SHAPES"], ["ITEM_SHAPE"]),
            helper.make_node("Unsqueeze", ["FLAT_SHAPES", "AXIS1"], ["FLAT_SHAPE"]),
            helper.make_node("Add", ["INPUT", "INPUT"], ["DOUBLED"]),
        ],
        "ragged_sum",
        [
            tensor("INPUT", fp32, ["elements"]),
            tensor("BOUNDS", int32, ["bounds"]),
            tensor("COUNTS", fp32, ["requests"]),
            tensor("ENDS", int32, ["requests"]),
            tensor("LONGEST", int32, ["longest"]),
            tensor("ITEM_SHAPES", int32, ["items", 1]),
            tensor("FLAT_SHAPES", int32, ["items"]),
        ],
        [
            tensor("SUM", fp32, rows),
            tensor("COUNT", fp32, rows),
            tensor("END", int32, rows),
            tensor("LONGEST_COUNT", int64, rows),
            tensor("ITEM_SHAPE", int32, ["items", 1]),
            tensor("FLAT_SHAPE", int32, ["items", 1]),
            tensor("DOUBLED", fp32, ["elements"]),
        ],
        initializer=[
            helper.make_tensor("ZERO", fp32, [1], [0.0]),
            helper.make_tensor("AXIS0", int64, [], [0]),
            helper.make_tensor("AXIS1", int64, [1], [1]),
            helper.make_tensor("FIRST", int64, [1], [0]),
            helper.make_tensor("BEFORE_LAST", int64, [1], [-1]),
            helper.make_tensor("SECOND", int64, [1], [1]),
            helper.make_tensor("END_OF_ALL", int64, [1], [2**62]),
            helper.make_tensor("ONE64", int64, [1], [1]),
        ],
    )
    save(graph, path)


def custom_double(path):
    """FP32 [batch, n] INPUT -> OUTPUT = 2 * INPUT through `Double` of the
    domain `tritonrs.test`, an operator ONNX Runtime does not have: only
    the custom operator library of tests/custom_op_library provides it."""
    dims = ["batch", "n"]
    graph = helper.make_graph(
        [helper.make_node("Double", ["INPUT"], ["OUTPUT"], domain="tritonrs.test")],
        "custom_double",
        [tensor("INPUT", TensorProto.FLOAT, dims)],
        [tensor("OUTPUT", TensorProto.FLOAT, dims)],
    )
    save(graph, path, extra_opsets=[helper.make_opsetid("tritonrs.test", 1)])


def write_all(examples: pathlib.Path, test_models: pathlib.Path, custom_op_models: pathlib.Path) -> None:
    simple(examples / "simple" / "1" / "model.onnx")
    simple_string(examples / "simple_string" / "1" / "model.onnx")
    scale_fp16(examples / "scale_fp16" / "1" / "model.onnx")
    for name, elem_type in IDENTITY_TYPES.items():
        identity(test_models / f"identity_{name.lower()}" / "1" / "model.onnx", elem_type)
    # The classification tests read its FP32 output as class scores.
    identity(test_models / "classifier" / "1" / "model.onnx", TensorProto.FLOAT)
    busy_loop(test_models / "busy_loop" / "1" / "model.onnx")
    batch_busy_loop(test_models / "batch_busy_loop" / "1" / "model.onnx")
    sequence_accumulator(test_models / "sequence_accumulator" / "1" / "model.onnx")
    ragged_sum(test_models / "ragged_sum" / "1" / "model.onnx")
    custom_double(custom_op_models / "custom_double.onnx")


def onnx_files(root: pathlib.Path):
    return sorted(p.relative_to(root) for p in root.rglob("*.onnx"))


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        write_all(tmp / "examples", tmp / "tests", tmp / "custom_ops")
        stale = []
        roots = ((EXAMPLES, tmp / "examples"), (TEST_MODELS, tmp / "tests"), (CUSTOM_OP_MODELS, tmp / "custom_ops"))
        for committed, fresh in roots:
            if onnx_files(committed) != onnx_files(fresh):
                stale.append(f"{committed}: the set of .onnx files differs")
                continue
            for rel in onnx_files(fresh):
                if not filecmp.cmp(committed / rel, fresh / rel, shallow=False):
                    stale.append(str(committed / rel))
    if stale:
        print("models out of date, run scripts/generate_models.py:", *stale, sep="\n  ")
        return 1
    print("committed models match scripts/generate_models.py")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args()
    if args.check:
        return check()
    write_all(EXAMPLES, TEST_MODELS, CUSTOM_OP_MODELS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
