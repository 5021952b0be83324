"""Custom Python models: subclass :class:`PythonModel`, push an instance, serve it.

A version stores the class's import path (``package.module:QualName``) and whatever files the
model's :meth:`PythonModel.save` writes. Loading imports that class by name from the server's
environment and calls :meth:`PythonModel.load` on a fresh instance. Unlike pickle, nothing in the
artifact is executed: only code already installed (and so already trusted) runs, which is why a
class defined in ``__main__``, a notebook or a function body cannot be served.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.errors import FailedPreconditionError, InferenceError, InvalidInputError
from modelyard.manifest import Manifest
from modelyard.runtime import Runtime, RuntimeOptions, SavedModel
from modelyard.runtimes._common import engine_errors, measure_load
from modelyard.runtimes._registry import register
from modelyard.types import Array, Datatype, Signature, TensorSpec

CLASS_OPTION = "class"


class PythonModel:
    """Base class of custom Python models.

    Subclass it in an importable module (installed on the servers), implement :meth:`predict`,
    and optionally :meth:`save` (write your files at push) and :meth:`load` (read them back).
    The server creates the instance with no arguments, so keep state in files, not in
    ``__init__`` arguments. ``predict`` may be called from several threads at once; set
    ``thread_safe = False`` to have calls serialised.

    Inputs arrive as numpy arrays; BYTES inputs are numpy object arrays of ``bytes``. Return
    numpy arrays; strings may be returned as ``str`` or ``bytes`` objects.
    """

    signature: ClassVar[Signature | None] = None
    """Inputs and outputs. None: inferred at push from ``sample`` and one call of ``predict``."""
    thread_safe: ClassVar[bool] = True

    def save(self, directory: Path) -> None:
        """Write the files this model needs into ``directory`` (at push). Default: none."""

    def load(self, path: Path) -> None:
        """Read the files written by :meth:`save` from ``path`` (at load). Default: nothing."""

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        """Compute the named outputs of a batch of named inputs."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement predict()")


def class_path(cls: type) -> str:
    """``module:QualName`` of ``cls``; InvalidInputError when another process cannot import it."""
    module, qualname = cls.__module__, cls.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        where = "__main__" if module == "__main__" else "a function body"
        raise InvalidInputError(
            f"model class {qualname} is defined in {where}; a server process cannot import it. "
            "Move the class into an importable module (a package installed where the server "
            "runs) and push again"
        )
    try:
        found = import_class(f"{module}:{qualname}")
    except FailedPreconditionError as exc:
        raise InvalidInputError(f"model class {module}:{qualname}: {exc.message}") from exc
    if found is not cls:
        raise InvalidInputError(
            f"model class {module}:{qualname} does not import as the same class (was it "
            "redefined or created dynamically?); define it once in an importable module"
        )
    return f"{module}:{qualname}"


def import_class(path: str) -> type[PythonModel]:
    """Import ``module:QualName`` and check it is a :class:`PythonModel` subclass."""
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise FailedPreconditionError(f"runtime_options.class {path!r} is not 'module:QualName'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise FailedPreconditionError(
            f"cannot import model class {path!r} ({exc}); install the package that defines it "
            "in the server's environment"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, PythonModel)):
        raise FailedPreconditionError(f"{path!r} is not a subclass of modelyard PythonModel")
    return obj


def _infer_signature(model: PythonModel, sample: Mapping[str, Array]) -> Signature:
    """Signature from a sample and the model's outputs on it; the first dim is the batch."""
    with engine_errors("python"):
        outputs = model.predict({k: np.asarray(v) for k, v in sample.items()})
    if not isinstance(outputs, Mapping):
        raise InvalidInputError("sample: predict() must return a dict of arrays")

    def spec(name: str, value: Any) -> TensorSpec:
        arr = np.asarray(value)
        shape = (-1, *arr.shape[1:]) if arr.ndim else ()
        return TensorSpec(name=name, datatype=Datatype.from_numpy(arr.dtype), shape=shape)

    return Signature(
        inputs=tuple(spec(k, v) for k, v in sample.items()),
        outputs=tuple(spec(k, v) for k, v in outputs.items()),
    )


@register
class PythonRuntime(Runtime):
    """Serves :class:`PythonModel` subclasses (kind ``python``). Gets BYTES inputs as bytes."""

    kind: ClassVar[str] = "python"
    accepts_raw_bytes: ClassVar[bool] = True

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._model: PythonModel | None = None
        self._lock: threading.Lock | None = None
        self._bytes = 1

    @classmethod
    def can_save(cls, obj: object) -> bool:
        return isinstance(obj, PythonModel) or (
            isinstance(obj, type) and issubclass(obj, PythonModel)
        )

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Record the class import path and let the model write its own files."""
        if isinstance(obj, type) and issubclass(obj, PythonModel):
            obj = obj()
        if not isinstance(obj, PythonModel):
            raise InvalidInputError(f"python runtime: {type(obj).__qualname__} is no PythonModel")
        path = class_path(type(obj))
        directory.mkdir(parents=True, exist_ok=True)
        obj.save(directory)
        signature = type(obj).signature
        if signature is None and sample is not None:
            signature = _infer_signature(obj, sample)
        return SavedModel(
            signature=signature,
            runtime_options={CLASS_OPTION: path},
            metadata={"python_class": path},
        )

    def load(self) -> None:
        path = self.manifest.runtime_options.get(CLASS_OPTION)
        if not isinstance(path, str):
            raise FailedPreconditionError("python runtime: manifest runtime_options.class missing")
        model_cls = import_class(path)

        def make() -> PythonModel:
            model = model_cls()
            model.load(self.path)
            return model

        self._model, self._bytes = measure_load(make, self.manifest.total_bytes())
        self._lock = None if model_cls.thread_safe else threading.Lock()

    @property
    def model(self) -> PythonModel | None:
        """The loaded model instance (None before :meth:`load` and after :meth:`unload`)."""
        return self._model

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        model = self._model
        if model is None:
            raise FailedPreconditionError("python runtime: predict() before load()")
        with engine_errors(self.kind):
            if self._lock is None:
                outputs = model.predict(dict(inputs))
            else:
                with self._lock:
                    outputs = model.predict(dict(inputs))
        if not isinstance(outputs, Mapping):
            raise InferenceError(
                f"python runtime: {type(model).__qualname__}.predict returned "
                f"{type(outputs).__name__}, not a dict of arrays"
            )
        return {str(k): np.asarray(v) for k, v in outputs.items()}

    def memory_bytes(self) -> int:
        return self._bytes

    def warmup(self) -> None:
        """Skipped when there is nothing to call the model with (no signature, no example)."""
        if self.manifest.warmup or self.manifest.signature.inputs:
            super().warmup()

    def unload(self) -> None:
        self._model = None
