"""The BentoML peer: a BentoML service answering the V2 infer route with ONNX Runtime.

Started by bench/systems.py inside BentoML's own venv (bench/.venvs/bentoml) as
``bentoml serve bentoml_service:Model``; ``BENCH_MODEL_PATH`` names the .onnx file and
``BENCH_MODEL_NAME`` the model. The request body is a V2 JSON request, so the same wrk script
drives every system; BentoML maps its top-level ``inputs`` field to the ``inputs`` argument.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "logreg")
_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
_V2 = {np.dtype(v): k for k, v in _NUMPY.items()}


# Access logs off: no other system in the run logs each request.
@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Model:
    def __init__(self) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.environ["BENCH_MODEL_PATH"], opts, providers=["CPUExecutionProvider"]
        )
        self.outputs = [o.name for o in self.session.get_outputs()]

    @bentoml.api(route=f"/v2/models/{MODEL_NAME}/infer")
    def infer(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        feeds = {
            t["name"]: np.asarray(t["data"], dtype=_NUMPY[t["datatype"]]).reshape(t["shape"])
            for t in inputs
        }
        results = self.session.run(self.outputs, feeds)
        return {
            "model_name": MODEL_NAME,
            "model_version": "1",
            "outputs": [
                {
                    "name": n,
                    "datatype": _V2[r.dtype],
                    "shape": list(r.shape),
                    "data": r.ravel().tolist(),
                }
                for n, r in zip(self.outputs, results, strict=True)
            ],
        }
