"""A small custom MLServer runtime that serves an ONNX model with ONNX Runtime.

MLServer has no ONNX runtime of its own; this is the MLModel subclass a user would write. It is
copied next to ``model-settings.json`` by bench/systems.py and loaded as ``mlserver_onnx.OnnxModel``
inside MLServer's own venv (bench/.venvs/mlserver). ``parameters.uri`` names the .onnx file.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        # Pinned to one core, like every system in the benchmark.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        path = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {
            inp.name: NumpyCodec.decode_input(inp).astype(np.float32, copy=False)
            for inp in payload.inputs
        }
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name, value)
                for name, value in zip(self._outputs, results, strict=True)
            ],
        )
