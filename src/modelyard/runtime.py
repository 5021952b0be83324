"""The runtime plugin interface: an adapter from ModelYard to one inference engine.

A runtime kind (``onnx``, ``sklearn``, ``xgboost``, ``lightgbm``, ``python``) does two jobs:

* **packaging** (class methods): recognise an in-memory model object and save it as files in a
  directory, returning what the manifest needs (files are checksummed by the registry);
* **serving** (instances): ``load`` the files of one version, ``predict`` on named numpy tensors,
  report ``memory_bytes``, ``warmup`` before being handed out, ``unload``.

Third-party runtimes subclass :class:`Runtime` and register with
:func:`modelyard.runtimes.register`.
``predict`` may be called from several threads at once; engines that are not thread-safe must lock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.manifest import Manifest
from modelyard.types import Array, Datatype, Signature


@dataclass(frozen=True)
class RuntimeOptions:
    """Process-wide knobs every runtime receives at load (filled from settings)."""

    allow_pickle: bool = False
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization_level: str = "all"  # disable | basic | extended | all
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SavedModel:
    """What :meth:`Runtime.save` returns to the registry."""

    signature: Signature | None = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class Runtime(ABC):
    """Base class of every runtime. Subclasses set ``kind`` and implement the abstract methods."""

    kind: ClassVar[str] = ""
    #: When False (the default) the dataplane hands BYTES inputs to ``predict`` as ``str`` elements
    #: (UTF-8 decoded, rejecting invalid UTF-8 with a 400); when True, as raw ``bytes``.
    accepts_raw_bytes: ClassVar[bool] = False

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        self.path = path
        self.manifest = manifest
        self.options = options

    # ---- packaging -------------------------------------------------------------------------
    @classmethod
    def can_save(cls, obj: object) -> bool:
        """True when ``obj`` (an in-memory model or a file path) is something this runtime saves."""
        return False

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Write ``obj`` as files under ``directory`` and describe it (signature if inferable)."""
        raise NotImplementedError(f"runtime {cls.kind!r} cannot package in-memory objects")

    # ---- serving ---------------------------------------------------------------------------
    @abstractmethod
    def load(self) -> None:
        """Load the version's files from ``self.path``. Called once, in a worker thread."""

    @abstractmethod
    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        """Run the model on a batch. Inputs and outputs are keyed by tensor name; the first axis
        is the batch axis when the signature's first dim is -1."""

    def memory_bytes(self) -> int:
        """Bytes this loaded runtime holds. Default: the artifact size (subclasses may measure)."""
        return max(self.manifest.total_bytes(), 1)

    def warmup(self) -> None:
        """Run one prediction before the runtime is handed out: the manifest's example, else
        zeros shaped by the signature (variable dims = 1). BYTES elements arrive as ``str``
        unless the runtime ``accepts_raw_bytes``, exactly as when serving."""
        inputs = warmup_inputs(self.manifest)
        if not self.accepts_raw_bytes:
            for name, arr in inputs.items():
                if arr.dtype == object:
                    flat = [v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.flat]
                    decoded = np.empty(len(flat), dtype=object)
                    decoded[:] = flat
                    inputs[name] = decoded.reshape(arr.shape)
        self.predict(inputs)

    def batch_bucket(self, inputs: Mapping[str, Array]) -> Hashable | None:
        """Which batch a request may join: the batcher only puts requests with equal buckets
        in one batch (e.g. a token-length bucket, so short texts are not padded to long ones).
        None (the default) = any batch. Called on the event loop for every batched request,
        before ``predict``: keep it cheap. May raise InvalidInputError to reject a request."""
        return None

    def unload(self) -> None:  # noqa: B027 - an optional hook; most engines free on GC
        """Drop engine resources. The instance is not used afterwards."""


def warmup_inputs(manifest: Manifest) -> dict[str, Array]:
    """The warm-up example of a manifest as numpy arrays (zeros of the signature when absent)."""
    if manifest.warmup:
        out: dict[str, Array] = {}
        for name, spec in manifest.warmup.items():
            dt = Datatype(spec["datatype"])
            shape = tuple(int(d) for d in spec["shape"])
            data = spec["data"]
            if dt is Datatype.BYTES:
                values = [v.encode() if isinstance(v, str) else bytes(v) for v in data]
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
                out[name] = arr.reshape(shape)
            else:
                out[name] = np.asarray(data, dtype=dt.numpy_dtype).reshape(shape)
        return out
    return zeros_for(manifest.signature)


def zeros_for(signature: Signature) -> dict[str, Array]:
    out: dict[str, Array] = {}
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if spec.datatype is Datatype.BYTES:
            arr = np.empty(shape, dtype=object)
            arr.fill(b"")
            out[spec.name] = arr
        else:
            out[spec.name] = np.zeros(shape, dtype=spec.datatype.numpy_dtype)
    return out


def warmup_example(inputs: Mapping[str, Array]) -> dict[str, Any]:
    """Encode an example as the manifest's JSON ``warmup`` field."""
    out: dict[str, Any] = {}
    for name, arr in inputs.items():
        dt = Datatype.from_numpy(arr.dtype)
        if dt is Datatype.BYTES:
            data: list[Any] = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in arr.reshape(-1).tolist()
            ]
        else:
            data = arr.reshape(-1).tolist()
        out[name] = {"datatype": dt.value, "shape": list(arr.shape), "data": data}
    return out
