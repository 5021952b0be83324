"""A Python model for stream tests, imported by name (``tests.integration.streammodels``) by
the ``modelyard stream`` processes the tests start, so it must stay importable from the
repository root.

``PacedDouble``: x FP32 [-1, 2] -> y = 2x, taking ``pace_s`` per row. Being slow is the scenario
(a consumer killed while a stream is still being scored), not a way to wait for something.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec

CONFIG = "paced.json"


class PacedDouble(PythonModel):
    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 2)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 2)),),
    )

    def __init__(self, pace_s: float = 0.0) -> None:
        self.pace_s = pace_s

    def save(self, directory: Path) -> None:
        (directory / CONFIG).write_text(json.dumps({"pace_s": self.pace_s}))

    def load(self, path: Path) -> None:
        found = path / CONFIG if (path / CONFIG).exists() else next(path.rglob(CONFIG))
        self.pace_s = float(json.loads(found.read_text())["pace_s"])

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["x"], dtype=np.float32)
        if self.pace_s and len(x):
            time.sleep(self.pace_s * len(x))
        return {"y": x * 2}
