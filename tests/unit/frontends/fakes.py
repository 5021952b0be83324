"""A FakeDataPlane serving the models the golden cases assume (see tests/conformance/golden).

* ``simple``: INPUT0, INPUT1 INT32 [-1, 16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1
* ``identity_<dtype>`` for every datatype: INPUT0 [-1, -1] -> OUTPUT0, an exact copy.

Every model has the one version ``"1"``. Inputs are validated against the signature the way the
real dataplane does (names, datatype, shape), and requested outputs are selected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from modelyard.core.dataplane import DataPlane
from modelyard.errors import InvalidInputError, ModelNotFoundError
from modelyard.types import (
    Array,
    ConfigTensor,
    Datatype,
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelMetadata,
    ModelStatistics,
    RepositoryEntry,
    RequestContext,
    ServerMetadata,
    TensorSpec,
)

Model = tuple[
    tuple[TensorSpec, ...], tuple[TensorSpec, ...], Callable[[dict[str, Array]], dict[str, Array]]
]


def _simple(inputs: dict[str, Array]) -> dict[str, Array]:
    return {
        "OUTPUT0": inputs["INPUT0"] + inputs["INPUT1"],
        "OUTPUT1": inputs["INPUT0"] - inputs["INPUT1"],
    }


def _identity(inputs: dict[str, Array]) -> dict[str, Array]:
    return {"OUTPUT0": np.array(inputs["INPUT0"], copy=True)}


def _models() -> dict[str, Model]:
    int32 = Datatype.INT32
    models: dict[str, Model] = {
        "simple": (
            (
                TensorSpec(name="INPUT0", datatype=int32, shape=(-1, 16)),
                TensorSpec(name="INPUT1", datatype=int32, shape=(-1, 16)),
            ),
            (
                TensorSpec(name="OUTPUT0", datatype=int32, shape=(-1, 16)),
                TensorSpec(name="OUTPUT1", datatype=int32, shape=(-1, 16)),
            ),
            _simple,
        )
    }
    for dt in Datatype:
        models[f"identity_{dt.value.lower()}"] = (
            (TensorSpec(name="INPUT0", datatype=dt, shape=(-1, -1)),),
            (TensorSpec(name="OUTPUT0", datatype=dt, shape=(-1, -1)),),
            _identity,
        )
    return models


class FakeDataPlane(DataPlane):
    """In-memory dataplane. ``calls`` records every infer; ``fail_with`` makes infer raise."""

    def __init__(self) -> None:
        self.models = _models()
        self.loaded = set(self.models)
        self.is_live = True
        self.is_ready = True
        self.fail_with: BaseException | None = None
        self.calls: list[tuple[str, str | None, InferRequest, RequestContext]] = []
        self.outputs_override: dict[str, Array] | None = None
        #: (name, version) of every model_statistics call.
        self.stats_calls: list[tuple[str | None, str | None]] = []

    def live(self) -> bool:
        return self.is_live

    def ready(self) -> bool:
        return self.is_ready

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("modelyard", "0.1.0", ("binary_tensor_data", "model_repository"))

    def _model(self, name: str, version: str | None) -> Model:
        model = self.models.get(name)
        if model is None:
            raise ModelNotFoundError(f"model {name!r} not found")
        if version not in (None, "1"):
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return model

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        inputs, outputs, _ = self._model(name, version)
        return ModelMetadata(name, ("1",), "onnxruntime_onnx", inputs, outputs)

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        self._model(name, version)
        return name in self.loaded

    async def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        inputs, outputs, _ = self._model(name, version)

        def tensors(specs: tuple[TensorSpec, ...]) -> tuple[ConfigTensor, ...]:
            return tuple(ConfigTensor(s.name, s.datatype, s.shape) for s in specs)

        return ModelConfig(name, "1", "onnx", "onnx", 0, tensors(inputs), tensors(outputs), None, 2)

    async def model_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[ModelStatistics]:
        """Every model's version "1", with ``inference_count`` = the infer calls it got."""
        self.stats_calls.append((name, version))
        names = sorted(self.models) if name is None else [name]
        for each in names:
            self._model(each, version)
        return [
            ModelStatistics(each, "1", inference_count=sum(c[0] == each for c in self.calls))
            for each in names
        ]

    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        self.calls.append((name, version, request, ctx))
        inputs, outputs, fn = self._model(name, version)
        if self.fail_with is not None:
            raise self.fail_with
        _validate(inputs, request.inputs)
        result = self.outputs_override if self.outputs_override is not None else fn(request.inputs)
        if request.outputs is not None:
            known = {spec.name for spec in outputs}
            for wanted in request.outputs:
                if wanted not in known:
                    raise InvalidInputError(f"unknown output {wanted!r}")
            result = {k: v for k, v in result.items() if k in request.outputs}
        return InferResponse(name, "1", result)

    async def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return [
            RepositoryEntry(name, "1", "READY" if name in self.loaded else "UNAVAILABLE")
            for name in sorted(self.models)
            if name in self.loaded or not ready_only
        ]

    async def load_model(self, name: str) -> None:
        self._model(name, None)
        self.loaded.add(name)

    async def unload_model(self, name: str) -> None:
        self._model(name, None)
        self.loaded.discard(name)


def _validate(specs: tuple[TensorSpec, ...], given: dict[str, Array]) -> None:
    names = {spec.name for spec in specs}
    for extra in given.keys() - names:
        raise InvalidInputError(f"unexpected input {extra!r}")
    for spec in specs:
        array = given.get(spec.name)
        if array is None:
            raise InvalidInputError(f"missing input {spec.name!r}")
        datatype = Datatype.from_numpy(array.dtype)
        if datatype is not spec.datatype:
            raise InvalidInputError(
                f"input {spec.name!r}: datatype {datatype.value}, expected {spec.datatype.value}"
            )
        if not spec.accepts_shape(array.shape):
            raise InvalidInputError(
                f"input {spec.name!r}: shape {list(array.shape)} does not fit {list(spec.shape)}"
            )
