"""A small MLServer runtime that serves an ONNX file with ONNX Runtime.

model-settings.json names it as `runtime.OnnxRuntimeModel` (this folder is
on PYTHONPATH) and gives `parameters.uri` (the ONNX file) and
`parameters.extra.intra_op_num_threads`. Requests are decoded with
MLServer's NumpyCodec, run in one `InferenceSession.run` call, and the
outputs encoded back; with adaptive batching (`max_batch_size`,
`max_batch_time` in model-settings.json) MLServer hands `predict` the
merged batch and splits the answer.

For the benchmark, each process that runs `predict` counts the requests and
rows it executed and, when BENCH_MLSERVER_STATS_DIR is set, writes the
counts to `<dir>/<model>.<pid>.json` from a background thread (at most five
times a second and only when they changed), so the effective batch size can
be read as rows / executions without adding work to the request path.
"""

import json
import os
import threading
import time

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class _Counters:
    def __init__(self, path):
        self.path = path
        self.executions = 0
        self.rows = 0
        self._written = (0, 0)
        if path:
            threading.Thread(target=self._flush_forever, daemon=True).start()

    def record(self, rows):
        self.executions += 1
        self.rows += rows

    def _flush_forever(self):
        while True:
            time.sleep(0.2)
            current = (self.executions, self.rows)
            if current != self._written:
                temporary = f"{self.path}.tmp"
                with open(temporary, "w") as file:
                    json.dump({"pid": os.getpid(), "execution_count": current[0], "inference_count": current[1]}, file)
                os.replace(temporary, self.path)
                self._written = current


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        extra = (self._settings.parameters.extra if self._settings.parameters else None) or {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_num_threads", 0))
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._output_names = [output.name for output in self._session.get_outputs()]
        stats_dir = os.environ.get("BENCH_MLSERVER_STATS_DIR")
        path = os.path.join(stats_dir, f"{self.name}.{os.getpid()}.json") if stats_dir else None
        self._counters = _Counters(path)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {request_input.name: NumpyCodec.decode_input(request_input) for request_input in payload.inputs}
        produced = self._session.run(self._output_names, feeds)
        rows = next(iter(feeds.values())).shape[0] if feeds else 0
        self._counters.record(rows)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(self._output_names, produced)],
        )
