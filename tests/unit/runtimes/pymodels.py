"""Custom Python models used by the runtime tests (importable, as a server would need)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from modelyard.runtimes import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec


class ScaleModel(PythonModel):
    """output = input * weights; the weights are the model's own file."""

    weights = np.array([1.0, 2.0, 3.0, 4.0])

    def save(self, directory: Path) -> None:
        np.save(directory / "weights.npy", self.weights)

    def load(self, path: Path) -> None:
        self.weights = np.load(path / "weights.npy")

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        return {"output": inputs["input"] * self.weights}


class UpperModel(PythonModel):
    """Upper-cases strings; declares its signature and gets raw bytes."""

    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,)),),
        outputs=(
            TensorSpec(name="upper", datatype=Datatype.BYTES, shape=(-1,)),
            TensorSpec(name="length", datatype=Datatype.INT64, shape=(-1,)),
        ),
    )

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        text = inputs["text"]
        upper = np.array([bytes(v).upper() for v in text], dtype=object)
        return {"upper": upper, "length": np.array([len(v) for v in text], dtype=np.int64)}


class SerialModel(PythonModel):
    """Not thread-safe on purpose: records whether two predicts ever overlapped."""

    thread_safe: ClassVar[bool] = False
    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1,)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP64, shape=(-1,)),),
    )

    def __init__(self) -> None:
        self.inside = 0
        self.overlapped = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        self.inside += 1
        self.overlapped |= self.inside > 1
        self.entered.set()
        self.release.wait(5)
        self.inside -= 1
        return {"y": inputs["x"]}


class BadOutputModel(PythonModel):
    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        return [1, 2]  # type: ignore[return-value]


class NotAModel:
    """Importable, but not a PythonModel."""
