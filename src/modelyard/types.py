"""The data model shared by every layer: datatypes, signatures, requests and responses.

Tensors are numpy arrays. BYTES tensors are numpy ``object`` arrays whose elements are ``bytes``.
Nothing here knows about HTTP, gRPC or any inference engine.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

Array = npt.NDArray[Any]


class Datatype(enum.StrEnum):
    """Tensor datatypes, named as in the Open Inference Protocol V2."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return _TO_NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element in the raw (binary) encoding; 0 for BYTES (variable length)."""
        return 0 if self is Datatype.BYTES else _TO_NUMPY[self].itemsize

    @classmethod
    def from_numpy(cls, dtype: npt.DTypeLike) -> Datatype:
        """Map a numpy dtype to its V2 datatype; strings and bytes map to BYTES."""
        dt = np.dtype(dtype)
        if dt.kind in ("O", "S", "U"):
            return cls.BYTES
        try:
            return _FROM_NUMPY[dt.newbyteorder("=")]
        except KeyError as exc:
            raise ValueError(f"numpy dtype {dt} has no Open Inference Protocol datatype") from exc


_TO_NUMPY: dict[Datatype, np.dtype[Any]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BYTES: np.dtype(object),
}
_FROM_NUMPY: dict[np.dtype[Any], Datatype] = {
    v: k for k, v in _TO_NUMPY.items() if k is not Datatype.BYTES
}


class TensorSpec(BaseModel):
    """One input or output of a model: name, V2 datatype and shape (-1 marks a variable dim)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=256)
    datatype: Datatype
    shape: tuple[int, ...]
    allow_nonfinite: bool = Field(
        default=False, description="Accept NaN/Inf in this (floating point) input."
    )

    @field_validator("shape")
    @classmethod
    def _dims_valid(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < -1 for d in shape):
            raise ValueError("shape dims must be >= 0, or -1 for a variable dim")
        return shape

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """True when a concrete ``shape`` fits this spec (same rank, fixed dims equal)."""
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))


class Signature(BaseModel):
    """The inputs and outputs of a model version."""

    model_config = ConfigDict(frozen=True)

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()

    def input(self, name: str) -> TensorSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def output(self, name: str) -> TensorSpec | None:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        return None


@dataclass(slots=True)
class RequestContext:
    """Per-request facts that travel with a request through every layer.

    ``deadline`` is a value of the server's monotonic clock (seconds) or None for no deadline.
    ``routing_key`` makes traffic choices sticky (e.g. a user id).
    """

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    deadline: float | None = None
    routing_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Set by the traffic layer: the endpoint the client called and the route it picked.
    endpoint: str | None = None
    route: str | None = None


@dataclass(slots=True)
class InferRequest:
    """A protocol-neutral inference request: named numpy tensors plus V2 parameters.

    ``outputs`` lists the requested output names (None = all outputs).
    """

    inputs: dict[str, Array]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None
    input_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    """A protocol-neutral inference response; ``model_version`` names the version that served it."""

    model_name: str
    model_version: str
    outputs: dict[str, Array]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class RepositoryEntry:
    """One row of the model repository index."""

    name: str
    version: str
    state: str  # READY | UNAVAILABLE | LOADING | UNLOADING
    reason: str = ""


@dataclass(slots=True, frozen=True)
class ConfigTensor:
    """One input or output in a model configuration (Triton's ``ModelInput`` / ``ModelOutput``).

    ``dims`` leaves out the batch dimension when the configuration's ``max_batch_size`` is > 0.
    A tensor of one value per row has ``dims == (1,)`` and ``reshape == ()``: the shape the model
    itself sees.
    """

    name: str
    datatype: Datatype
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None


@dataclass(slots=True, frozen=True)
class ModelConfig:
    """What a served version is, in the terms of Triton's model configuration."""

    name: str
    version: str  # the version described (the one the request resolved to)
    platform: str
    backend: str
    max_batch_size: int  # 0: no dynamic batching, and dims are full shapes
    inputs: tuple[ConfigTensor, ...]
    outputs: tuple[ConfigTensor, ...]
    max_queue_delay_us: int | None  # the dynamic batcher's wait; None when it does not batch
    instance_count: int  # how many predictions of this version may run at once
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class StatDuration:
    """How many times something happened and its cumulative duration in nanoseconds."""

    count: int = 0
    ns: int = 0


@dataclass(slots=True, frozen=True)
class BatchStatistics:
    """Model executions of one batch size (rows)."""

    batch_size: int
    compute_input: StatDuration
    compute_infer: StatDuration
    compute_output: StatDuration


@dataclass(slots=True, frozen=True)
class ModelStatistics:
    """One version's counts since this process started (Triton's statistics extension)."""

    name: str
    version: str
    last_inference_ms: int = 0  # wall clock, milliseconds since the epoch; 0 = never
    inference_count: int = 0  # successful requests, each counted as its batch size (Triton's)
    execution_count: int = 0  # successful model executions (one per batch)
    success: StatDuration = StatDuration()
    fail: StatDuration = StatDuration()
    queue: StatDuration = StatDuration()
    compute_input: StatDuration = StatDuration()
    compute_infer: StatDuration = StatDuration()
    compute_output: StatDuration = StatDuration()
    cache_hit: StatDuration = StatDuration()
    cache_miss: StatDuration = StatDuration()
    batch_stats: tuple[BatchStatistics, ...] = ()
