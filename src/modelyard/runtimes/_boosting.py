"""What XGBoost and LightGBM runtimes share: one tabular input, and classifier or regressor outputs
named like the sklearn runtime's (``label`` + ``probabilities``, or ``prediction``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.errors import FailedPreconditionError
from modelyard.runtimes._common import cast_output, label_datatype, tabular_input
from modelyard.types import Array, Datatype, Signature, TensorSpec

CLASSIFIER = "classifier"
REGRESSOR = "regressor"


@dataclass(frozen=True)
class Task:
    """How to read an engine's raw predictions; stored in the manifest's ``runtime_options``."""

    task: str  # classifier | regressor
    classes: tuple[Any, ...] = ()
    n_outputs: int = 1  # regressors: targets per row
    probabilities: bool = True  # classifiers: does the raw output hold probabilities?

    def to_options(self) -> dict[str, Any]:
        if self.task == CLASSIFIER:
            return {
                "task": self.task,
                "classes": list(self.classes),
                "probabilities": self.probabilities,
            }
        return {"task": self.task, "n_outputs": self.n_outputs}

    @classmethod
    def from_options(cls, options: dict[str, Any], kind: str) -> Task:
        task = options.get("task")
        if task not in (CLASSIFIER, REGRESSOR):
            raise FailedPreconditionError(f"{kind} runtime: runtime_options.task is {task!r}")
        return cls(
            task=str(task),
            classes=tuple(options.get("classes") or ()),
            n_outputs=int(options.get("n_outputs", 1)),
            probabilities=bool(options.get("probabilities", True)),
        )

    def classes_array(self) -> Array:
        return np.asarray(self.classes)

    def signature(self, n_features: int, sample: Array | None, float_dt: Datatype) -> Signature:
        """The signature of this task; ``float_dt`` is the engine's output precision."""
        spec = tabular_input(n_features, sample)
        if self.task == CLASSIFIER:
            classes = self.classes_array()
            outputs = [TensorSpec(name="label", datatype=label_datatype(classes), shape=(-1,))]
            if self.probabilities:
                proba_shape = (-1, len(self.classes))
                outputs.append(
                    TensorSpec(name="probabilities", datatype=float_dt, shape=proba_shape)
                )
        else:
            shape = (-1,) if self.n_outputs == 1 else (-1, self.n_outputs)
            outputs = [TensorSpec(name="prediction", datatype=float_dt, shape=shape)]
        return Signature(inputs=(spec,), outputs=tuple(outputs))

    def check_outputs(self, specs: Sequence[TensorSpec], kind: str) -> None:
        """Fail at load (not at the first request) when a signature asks for the impossible."""
        able = {"label", "probabilities"} if self.task == CLASSIFIER else {"prediction"}
        if self.task == CLASSIFIER and not self.probabilities:
            able.discard("probabilities")
        for spec in specs:
            if spec.name not in able:
                raise FailedPreconditionError(
                    f"{kind} runtime: cannot compute output {spec.name!r} for a {self.task} "
                    f"(outputs: {', '.join(sorted(able))})"
                )

    def outputs(self, raw: Array, specs: Sequence[TensorSpec]) -> dict[str, Array]:
        """Named outputs from raw predictions: regressor values, or class probabilities (one
        column for binary = P(class 1)) or, without probabilities, class indices."""
        if self.task == REGRESSOR:
            return {s.name: cast_output(raw, s) for s in specs}
        if not self.probabilities:
            index = raw.reshape(-1).astype(np.intp)
            proba = raw
        elif raw.ndim == 1:
            # Both engines' sklearn wrappers label binary rows with "P(class 1) > 0.5".
            index = (raw > 0.5).astype(np.intp)
            proba = np.stack([1.0 - raw, raw], axis=1)
        else:
            index = np.argmax(raw, axis=1)
            proba = raw
        out: dict[str, Array] = {}
        for spec in specs:
            value = self.classes_array()[index] if spec.name == "label" else proba
            out[spec.name] = cast_output(value, spec)
        return out


def native(values: Any) -> tuple[Any, ...]:
    """Class labels as JSON-friendly Python scalars (numpy scalars become int/str/...)."""
    return tuple(v.item() if isinstance(v, np.generic) else v for v in np.asarray(values))
