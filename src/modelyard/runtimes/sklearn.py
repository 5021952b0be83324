"""scikit-learn (kind ``sklearn``): estimators and pipelines saved with skops, never pickle.

Files: ``model.skops`` (default), or ``model.pkl`` / ``model.joblib`` when a pickle file was pushed
with ``allow_pickle``. Loading a skops file trusts only the types skops reports as untrusted whose
module is scikit-learn, NumPy, SciPy or a basic builtin; anything else (a custom function, a
third-party class) is refused with UnsafeArtifactError unless ``allow_pickle`` is set, and pickle
files are refused the same way, because loading them runs code chosen by whoever wrote the file.

Outputs by estimator: classifiers give ``label`` ([-1]) and ``probabilities`` ([-1, n_classes],
when ``predict_proba`` exists); other predictors give ``prediction``; pure transformers give
``output``. The input is ``input`` ([-1, n_features]) or, for text pipelines, ``text`` ([-1]).
Only the outputs named in the manifest's signature are computed.
"""

from __future__ import annotations

import importlib
import os
import pickle
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import skops.io
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    MissingDependencyError,
    UnsafeArtifactError,
)
from modelyard.manifest import Manifest
from modelyard.runtime import Runtime, RuntimeOptions, SavedModel
from modelyard.runtimes._common import (
    PICKLE_SUFFIXES,
    as_path,
    cast_output,
    copy_file,
    engine_errors,
    input_array,
    label_datatype,
    measure_load,
    module_root,
    sample_array,
    tabular_input,
    to_strings,
)
from modelyard.runtimes._registry import register
from modelyard.types import Array, Datatype, Signature, TensorSpec

FILES = {"skops": "model.skops", "pickle": "model.pkl", "joblib": "model.joblib"}
# Output name -> estimator method that computes it.
METHODS = {
    "label": "predict",
    "probabilities": "predict_proba",
    "prediction": "predict",
    "output": "transform",
}
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
# Basic containers and scalars: rebuilding them runs no code of the artifact's choosing.
_TRUSTED_BUILTINS = frozenset(
    {
        *(f"builtins.{n}" for n in ("int", "float", "complex", "str", "bytes", "bool", "list")),
        *(f"builtins.{n}" for n in ("tuple", "dict", "set", "frozenset", "slice", "NoneType")),
        *(f"collections.{n}" for n in ("OrderedDict", "defaultdict", "Counter", "deque")),
    }
)
_OTHER_ENGINES = frozenset({"xgboost", "lightgbm"})


def _is_trusted(type_name: str) -> bool:
    return type_name.startswith(_TRUSTED_PREFIXES) or type_name in _TRUSTED_BUILTINS


def untrusted_types(path: Path) -> list[str]:
    """Types in a skops file that neither skops (by default) nor ModelYard trusts."""
    return [t for t in skops.io.get_untrusted_types(file=path) if not _is_trusted(t)]


# skops' untrusted types per file, by identity (device, inode, size, mtime_ns): see _skops_types.
_SKOPS_TYPES: dict[tuple[int, int, int, int], list[str]] = {}
_SKOPS_TYPES_LOCK = threading.Lock()


def _skops_types(path: Path) -> list[str]:
    """``skops.io.get_untrusted_types`` of ``path``, remembered while the file is unchanged.

    Listing the types walks the whole file, as much work again as loading it, and a model
    evicted from RAM reloads the same file many times. Remembering is safe even if the file
    changed without changing its identity: the list only goes through the trust check in
    :func:`load_file` and then into ``skops.io.load(trusted=...)``, which audits the file again
    and refuses every type not in the list, so no type is ever trusted unchecked.
    """
    st = os.stat(path)
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    found = _SKOPS_TYPES.get(identity)
    if found is None:
        found = list(skops.io.get_untrusted_types(file=path))
        with _SKOPS_TYPES_LOCK:
            if len(_SKOPS_TYPES) >= 4096:
                _SKOPS_TYPES.clear()
            _SKOPS_TYPES[identity] = found
    return list(found)


def load_file(path: Path, fmt: str, allow_pickle: bool) -> Any:
    """Load a saved estimator; UnsafeArtifactError when that would need trust not given."""
    if fmt == "skops":
        found = _skops_types(path)
        unsafe = [t for t in found if not _is_trusted(t)]
        if unsafe and not allow_pickle:
            raise UnsafeArtifactError(
                f"{path.name} holds types that are not scikit-learn, NumPy or SciPy: "
                f"{', '.join(unsafe)}; loading them may run their code. Set allow_pickle to "
                "trust this artifact"
            )
        return skops.io.load(path, trusted=found)
    if not allow_pickle:
        raise UnsafeArtifactError(
            f"{path.name} is a {fmt} file: loading it runs code from the file. Set allow_pickle "
            "(MODELYARD_ALLOW_PICKLE=true) only for registries you trust"
        )
    if fmt == "joblib":
        return importlib.import_module("joblib").load(path)
    with path.open("rb") as fh:
        return pickle.load(fh)


def _first_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[0][1] if steps else model


def _is_text_model(model: Any) -> bool:
    if hasattr(model, "n_features_in_"):
        return False
    return type(_first_step(model)).__module__.startswith("sklearn.feature_extraction.text")


def _input_spec(model: Any, sample: Array | None) -> TensorSpec | None:
    if _is_text_model(model):
        return TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,))
    n_features = getattr(model, "n_features_in_", None)
    if isinstance(n_features, int | np.integer):
        return tabular_input(int(n_features), sample)
    if sample is not None and sample.ndim >= 1:
        dt = Datatype.from_numpy(sample.dtype)
        return TensorSpec(name="input", datatype=dt, shape=(-1, *sample.shape[1:]))
    return None


def _probe(model: Any, method: str, data: Any) -> Array | None:
    """The result of ``model.method(data)``, used to read output dtypes and shapes."""
    try:
        out = getattr(model, method)(data)
    except Exception:
        return None
    return np.asarray(out.toarray() if hasattr(out, "toarray") else out)


def _out_spec(name: str, probe: Array | None, default_shape: tuple[int, ...]) -> TensorSpec:
    if probe is None:
        return TensorSpec(name=name, datatype=Datatype.FP64, shape=default_shape)
    shape = (-1, *probe.shape[1:])
    return TensorSpec(name=name, datatype=Datatype.from_numpy(probe.dtype), shape=shape)


def infer_signature(model: Any, sample: Array | None) -> Signature | None:
    """Inputs from ``n_features_in_`` (or the text vectorizer, or the sample); outputs from the
    estimator type and one call on the sample (zeros when there is none)."""
    spec = _input_spec(model, sample)
    if spec is None:
        return None
    data: Any
    if spec.datatype is Datatype.BYTES:
        data = list(to_strings(sample.reshape(-1))) if sample is not None else [""]
    else:
        data = sample if sample is not None else np.zeros((1, *spec.shape[1:]))
    outputs: list[TensorSpec] = []
    classes = getattr(model, "classes_", None)
    if is_classifier(model) and isinstance(classes, np.ndarray) and classes.ndim == 1:
        outputs.append(TensorSpec(name="label", datatype=label_datatype(classes), shape=(-1,)))
        if hasattr(model, "predict_proba"):
            n = len(classes)
            outputs.append(
                _out_spec("probabilities", _probe(model, "predict_proba", data), (-1, n))
            )
    elif hasattr(model, "predict"):
        outputs.append(_out_spec("prediction", _probe(model, "predict", data), (-1,)))
    elif hasattr(model, "transform"):
        outputs.append(_out_spec("output", _probe(model, "transform", data), (-1, -1)))
    else:
        return None
    return Signature(inputs=(spec,), outputs=tuple(outputs))


@register
class SklearnRuntime(Runtime):
    """scikit-learn estimators and pipelines (kind ``sklearn``)."""

    kind: ClassVar[str] = "sklearn"
    accepts_raw_bytes: ClassVar[bool] = False

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._model: Any = None
        self._calls: list[tuple[TensorSpec, str, Callable[[Any], Any]]] = []
        self._frame: Callable[[Array], Any] | None = None
        self._bytes = 1

    @classmethod
    def can_save(cls, obj: object) -> bool:
        path = as_path(obj)
        if path is not None:
            return path.suffix.lower() in PICKLE_SUFFIXES | {".skops"}
        return isinstance(obj, BaseEstimator) and module_root(obj) not in _OTHER_ENGINES

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Dump an estimator with skops, or copy a ``.skops``/pickle file.

        A pickle file is unpickled here to infer the signature: callers check the
        ``allow_pickle`` opt-in before saving one (the registry does).
        """
        arr = sample_array(sample)
        path = as_path(obj)
        if path is None:
            _check_fitted(obj)
            fmt, model = "skops", obj
            directory.mkdir(parents=True, exist_ok=True)
            skops.io.dump(obj, directory / FILES[fmt])
        else:
            fmt, model = _copy_file(path, directory)
        metadata: dict[str, Any] = {"format": fmt, "estimator": _describe(obj, model)}
        if fmt == "skops":
            unsafe = untrusted_types(directory / FILES[fmt])
            if unsafe:
                metadata["untrusted_types"] = unsafe
        names = getattr(model, "feature_names_in_", None)
        options: dict[str, Any] = {"format": fmt}
        if names is not None:
            options["feature_names"] = [str(n) for n in names]
        signature = infer_signature(model, arr) if model is not None else None
        return SavedModel(signature=signature, runtime_options=options, metadata=metadata)

    def load(self) -> None:
        fmt = str(self.manifest.runtime_options.get("format", "skops"))
        if fmt not in FILES:
            raise FailedPreconditionError(f"sklearn runtime: unknown format {fmt!r}")
        file = self.path / FILES[fmt]
        if not file.is_file():
            raise FailedPreconditionError(f"sklearn runtime: model file {file.name} is missing")
        self._model, self._bytes = measure_load(
            lambda: load_file(file, fmt, self.options.allow_pickle), self.manifest.total_bytes()
        )
        self._calls = []
        for spec in self.manifest.signature.outputs:
            method = METHODS.get(spec.name)
            if method is None or not hasattr(self._model, method):
                raise FailedPreconditionError(
                    f"sklearn runtime: cannot compute output {spec.name!r} (outputs are "
                    f"{', '.join(METHODS)} when the estimator has the method)"
                )
            self._calls.append((spec, method, getattr(self._model, method)))
        names = self.manifest.runtime_options.get("feature_names")
        self._frame = _frame_builder(names) if names else None

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        if self._model is None:
            raise FailedPreconditionError("sklearn runtime: predict() before load()")
        signature = self.manifest.signature
        name = signature.inputs[0].name if signature.inputs else "input"
        data: Any = input_array(inputs, name)
        if signature.inputs and signature.inputs[0].datatype is Datatype.BYTES:
            data = list(to_strings(data.reshape(-1)))
        elif self._frame is not None:
            data = self._frame(data)
        results: dict[str, Any] = {}  # label and prediction share one predict() call
        out: dict[str, Array] = {}
        with engine_errors(self.kind):
            for spec, method, call in self._calls:
                if method not in results:
                    results[method] = call(data)
                out[spec.name] = cast_output(results[method], spec)
        return out

    def memory_bytes(self) -> int:
        """Approximate: RSS growth while the file was loaded, at least the file size."""
        return self._bytes

    def unload(self) -> None:
        self._model = None
        self._calls = []


def _copy_file(path: Path, directory: Path) -> tuple[str, Any]:
    """Copy a pushed model file; returns its format and the model (None when it cannot be
    inspected without trusting it)."""
    suffix = path.suffix.lower()
    fmt = "skops" if suffix == ".skops" else "joblib" if suffix == ".joblib" else "pickle"
    copy_file(path, directory, FILES[fmt])
    try:
        return fmt, load_file(path, fmt, allow_pickle=fmt != "skops")
    except UnsafeArtifactError:
        return fmt, None
    except Exception as exc:
        raise InvalidInputError(f"{path.name}: not a loadable {fmt} file ({exc})") from exc


def _check_fitted(model: object) -> None:
    try:
        check_is_fitted(model)
    except (NotFittedError, TypeError) as exc:
        raise InvalidInputError(f"{type(model).__name__} is not fitted ({exc})") from exc


def _describe(obj: object, model: Any) -> str:
    target = model if model is not None else obj
    return f"{type(target).__module__}.{type(target).__qualname__}"


def _frame_builder(names: list[str]) -> Callable[[Array], Any]:
    """Models fitted on a DataFrame expect one (column names checked, or selected by name)."""
    try:
        pd = importlib.import_module("pandas")
    except ImportError as exc:
        raise MissingDependencyError(
            "pandas is not installed; this model was fitted on a DataFrame and needs it: "
            "pip install pandas"
        ) from exc
    return lambda arr: pd.DataFrame(arr, columns=names)
