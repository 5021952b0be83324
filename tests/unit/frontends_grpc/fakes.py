"""A DataPlane stand-in for frontend tests: Triton's ``simple`` model, one identity model per
datatype, and models that fail in each way a real dataplane can."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modelyard.core.clock import FakeClock
from modelyard.core.dataplane import DataPlane
from modelyard.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    UnavailableError,
)
from modelyard.types import (
    Array,
    BatchStatistics,
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
    StatDuration,
    TensorSpec,
)

SIMPLE_INPUTS = (
    TensorSpec(name="INPUT0", datatype=Datatype.INT32, shape=(-1, 16)),
    TensorSpec(name="INPUT1", datatype=Datatype.INT32, shape=(-1, 16)),
)
SIMPLE_OUTPUTS = (
    TensorSpec(name="OUTPUT0", datatype=Datatype.INT32, shape=(-1, 16)),
    TensorSpec(name="OUTPUT1", datatype=Datatype.INT32, shape=(-1, 16)),
)
SLOW_MODEL_SECONDS = 1.0


def identity_name(datatype: Datatype) -> str:
    return f"identity_{datatype.value.lower()}"


@dataclass
class FakeDataPlane(DataPlane):
    """Models: ``simple`` (versions 1 and 2), ``identity_<dtype>``, ``slow`` (takes
    SLOW_MODEL_SECONDS of the fake clock, then honours the deadline), ``broken`` (raises a bare
    RuntimeError), ``unavailable`` (UnavailableError). Anything else is unknown."""

    clock: FakeClock = field(default_factory=FakeClock)
    calls: list[tuple[str, str | None, InferRequest, RequestContext]] = field(default_factory=list)
    loaded: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loaded = {"simple": True, **{identity_name(dt): False for dt in Datatype}}

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="modelyard", version="0.1.0", extensions=("model_repository",))

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        self._check(name, version)
        if name == "simple":
            return ModelMetadata(
                "simple", ("1", "2"), "onnxruntime_onnx", SIMPLE_INPUTS, SIMPLE_OUTPUTS
            )
        dt = Datatype(name.removeprefix("identity_").upper())
        return ModelMetadata(
            name,
            ("1",),
            "onnxruntime_onnx",
            (TensorSpec(name="INPUT0", datatype=dt, shape=(-1, -1)),),
            (TensorSpec(name="OUTPUT0", datatype=dt, shape=(-1, -1)),),
        )

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        self._check(name, version)
        return self.loaded[name]

    async def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        """``simple`` batches (up to 8 rows, 100 us); the identity models do not."""
        self._check(name, version)
        meta = await self.model_metadata(name, version)
        batched = name == "simple"

        def tensors(specs: tuple[TensorSpec, ...]) -> tuple[ConfigTensor, ...]:
            return tuple(
                ConfigTensor(s.name, s.datatype, s.shape[1:] if batched else s.shape) for s in specs
            )

        return ModelConfig(
            name=name,
            version=version or "1",
            platform="onnx",
            backend="onnx",
            max_batch_size=8 if batched else 0,
            inputs=tensors(meta.inputs),
            outputs=tensors(meta.outputs),
            max_queue_delay_us=100 if batched else None,
            instance_count=4,
            parameters={"served_version": version or "1"},
        )

    async def model_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[ModelStatistics]:
        """Canned counts: every loaded model's version 1, ``simple`` with one batch size."""
        if name is None:
            if version is not None:
                raise InvalidInputError("statistics of a version need the model name")
            return [ModelStatistics(n, "1") for n in sorted(self.loaded)]
        self._check(name, version)
        if name != "simple":
            return [ModelStatistics(name, version or "1")]
        return [
            ModelStatistics(
                name="simple",
                version=version or "1",
                last_inference_ms=1_700_000_000_123,
                inference_count=12,
                execution_count=3,
                success=StatDuration(5, 5_000),
                fail=StatDuration(2, 700),
                queue=StatDuration(5, 300),
                compute_infer=StatDuration(5, 4_000),
                batch_stats=(
                    BatchStatistics(4, StatDuration(3, 0), StatDuration(3, 2_400), StatDuration()),
                ),
            )
        ]

    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        self.calls.append((name, version, request, ctx))
        if name == "broken":
            raise RuntimeError("secret internal detail")
        if name == "unavailable":
            raise UnavailableError("model 'unavailable' is loading")
        if name == "slow":
            self.clock.advance(SLOW_MODEL_SECONDS)
            if ctx.deadline is not None and self.clock.monotonic() > ctx.deadline:
                raise DeadlineExceededError("model 'slow' missed the request deadline")
            return InferResponse("slow", "1", {}, id=request.id)
        self._check(name, version)
        outputs = self._run(name, request.inputs)
        if request.outputs is not None:
            unknown = [o for o in request.outputs if o not in outputs]
            if unknown:
                raise InvalidInputError(f"model {name!r} has no output {unknown[0]!r}")
            outputs = {o: outputs[o] for o in request.outputs}
        return InferResponse(name, version or "1", outputs, id=request.id)

    def _check(self, name: str, version: str | None) -> None:
        if name not in self.loaded:
            raise ModelNotFoundError(f"model {name!r} is not in the registry")
        known = ("1", "2") if name == "simple" else ("1",)
        if version is not None and version not in known:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")

    def _run(self, name: str, inputs: dict[str, Array]) -> dict[str, Array]:
        if name == "simple":
            for spec in SIMPLE_INPUTS:
                array = inputs.get(spec.name)
                if array is None:
                    raise InvalidInputError(f"input {spec.name!r} is missing")
                if array.dtype != np.int32 or not spec.accepts_shape(array.shape):
                    raise InvalidInputError(f"input {spec.name!r} must be INT32 [-1, 16]")
            a, b = inputs["INPUT0"], inputs["INPUT1"]
            return {"OUTPUT0": a + b, "OUTPUT1": a - b}
        if "INPUT0" not in inputs:
            raise InvalidInputError("input 'INPUT0' is missing")
        return {"OUTPUT0": inputs["INPUT0"]}

    async def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        return [
            RepositoryEntry(name, "1", "READY" if ready else "UNAVAILABLE")
            for name, ready in sorted(self.loaded.items())
            if ready or not ready_only
        ]

    async def load_model(self, name: str) -> None:
        self._check(name, None)
        self.loaded[name] = True

    async def unload_model(self, name: str) -> None:
        self._check(name, None)
        self.loaded[name] = False
