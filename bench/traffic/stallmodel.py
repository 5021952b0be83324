"""A model that stalls now and then: the scenario of the hedging benchmark.

``x`` FP32 [-1, 1] -> ``y`` = 2x. Each call sleeps ``base_s``, and with probability
``stall_rate`` (independently per call) ``stall_s`` instead, like a replica that hits a GC
pause or a slow disk now and then. The server imports it as
``bench.traffic.stallmodel:StallModel`` (the repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec

CONFIG_FILE = "stall.json"


class StallModel(PythonModel):
    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 1)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 1)),),
    )

    def __init__(
        self, *, base_s: float = 0.001, stall_s: float = 0.2, stall_rate: float = 0.01
    ) -> None:
        self.config = {"base_s": base_s, "stall_s": stall_s, "stall_rate": stall_rate}

    def save(self, directory: Path) -> None:
        (directory / CONFIG_FILE).write_text(json.dumps(self.config))

    def load(self, path: Path) -> None:
        self.config = json.loads(next(path.rglob(CONFIG_FILE)).read_text())

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["x"], dtype=np.float32)
        stalled = random.random() < float(self.config["stall_rate"])
        time.sleep(float(self.config["stall_s" if stalled else "base_s"]))
        return {"y": x * 2}
