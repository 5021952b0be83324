"""Python models for rollout and shadow tests: a scorer that is slow, erring or disagreeing on
a known, deterministic share of inputs (the scenario under test, not synchronisation).

The server process imports this module by name (``tests.rolloutmodels:Scorer``), so it must stay
importable from the repository root. The behaviour is written into the version's files at push
(:meth:`Scorer.save`), because the server creates the instance with no arguments.

``x`` FP32 [-1, 1] -> ``probabilities`` FP32 [-1, 2]: class 1 for x >= 0, else class 0.
With ``flip_mod=m``, rows whose ``int(|x|) % m == FLIP_AT`` get the other class (a shadow that
disagrees on 1/m of integer inputs); with ``error_mod=m``, a request holding such a row
(``% m == ERROR_AT``) fails (a candidate that errors on 1/m of inputs); ``delay_s`` sleeps in
every call that holds a non-zero row (warm-up zeros pass through at once).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec

CONFIG_FILE = "scorer.json"
FLIP_AT = 3
ERROR_AT = 7


class Scorer(PythonModel):
    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 1)),),
        outputs=(TensorSpec(name="probabilities", datatype=Datatype.FP32, shape=(-1, 2)),),
    )

    def __init__(
        self, *, delay_s: float = 0.0, error_mod: int = 0, flip_mod: int = 0, tag: str = ""
    ) -> None:
        # ``tag`` only makes two otherwise equal versions different artifacts.
        self.config = {"delay_s": delay_s, "error_mod": error_mod, "flip_mod": flip_mod, "tag": tag}

    def save(self, directory: Path) -> None:
        (directory / CONFIG_FILE).write_text(json.dumps(self.config))

    def load(self, path: Path) -> None:
        found = sorted(path.rglob(CONFIG_FILE))
        if not found:
            raise FileNotFoundError(f"{CONFIG_FILE} not found under {path}")
        self.config = json.loads(found[0].read_text())

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["x"], dtype=np.float32).reshape(-1)
        ids = np.abs(x).astype(np.int64)
        if np.any(x != 0) and self.config["delay_s"]:
            time.sleep(float(self.config["delay_s"]))
        error_mod = int(self.config["error_mod"])
        if error_mod and np.any((ids % error_mod == ERROR_AT) & (x != 0)):
            raise RuntimeError(f"scorer fails on inputs with |x| % {error_mod} == {ERROR_AT}")
        positive = x >= 0
        flip_mod = int(self.config["flip_mod"])
        if flip_mod:
            positive = positive ^ ((ids % flip_mod == FLIP_AT) & (x != 0))
        p1 = positive.astype(np.float32) * 0.8 + 0.1
        return {"probabilities": np.stack([1 - p1, p1], axis=1)}
