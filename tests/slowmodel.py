"""A Python model that is slow on purpose, controlled by files a test creates (life-cycle tests).

The server process imports this module by name (``tests.slowmodel:SlowModel``), so it must stay
importable from the repository root. Being slow is the scenario under test; the test decides when
the model may go on by creating a gate file, so no test sleeps to synchronise:

* ``load`` touches ``load-started``, waits for ``release-load``, then touches ``loaded``;
* ``predict`` touches ``arrived-<value>`` for every non-zero input row, waits for
  ``release-predict``, then answers ``y = 2 * x``. Zero rows (the warm-up) pass straight through.

The gate directory is written into the version's files at push (:meth:`SlowModel.save`), because
the server creates the instance with no arguments.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec

CONFIG_FILE = "slowmodel.json"
GATE_TIMEOUT_S = 60.0
_POLL_S = 0.005


def wait_for_file(path: Path, timeout_s: float = GATE_TIMEOUT_S) -> None:
    """Block until ``path`` exists; TimeoutError after ``timeout_s`` so a broken test ends."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s} s")
        time.sleep(_POLL_S)


class SlowModel(PythonModel):
    """x FP32 [-1, 1] -> y FP32 [-1, 1] = 2x, slow to load and to predict until released."""

    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 1)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 1)),),
    )

    def __init__(self, gates: Path | None = None) -> None:
        self.gates = gates

    def save(self, directory: Path) -> None:
        if self.gates is None:
            raise ValueError("SlowModel needs a gate directory at push")
        (directory / CONFIG_FILE).write_text(json.dumps({"gates": str(self.gates)}))

    def load(self, path: Path) -> None:
        config = json.loads(_find_config(path).read_text())
        gates = self.gates = Path(config["gates"])
        (gates / "load-started").touch()
        wait_for_file(gates / "release-load")
        (gates / "loaded").touch()

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["x"], dtype=np.float32)
        assert self.gates is not None
        rows = [float(v) for v in x.reshape(-1) if v != 0]
        if rows:
            for value in rows:
                (self.gates / f"arrived-{value:g}").touch()
            wait_for_file(self.gates / "release-predict")
        return {"y": x * 2}


def _find_config(path: Path) -> Path:
    direct = path / CONFIG_FILE
    if direct.exists():
        return direct
    found = sorted(path.rglob(CONFIG_FILE))
    if not found:
        raise FileNotFoundError(f"{CONFIG_FILE} not found under {path}")
    return found[0]
