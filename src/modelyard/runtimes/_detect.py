"""Detection: which runtime kind saves a given in-memory model or model file."""

from __future__ import annotations

import sys

from modelyard.errors import InvalidInputError, MissingDependencyError
from modelyard.runtime import Runtime
from modelyard.runtimes._common import PICKLE_SUFFIXES, path_suffix
from modelyard.runtimes._registry import builtin_kinds, get_runtime_class, registered
from modelyard.runtimes.python import PythonModel


def _is_python_model(obj: object) -> bool:
    return isinstance(obj, PythonModel) or (isinstance(obj, type) and issubclass(obj, PythonModel))


# (kind, engine package, file suffixes). Order matters: XGBoost and LightGBM estimators are
# scikit-learn estimators too, so they are tried first.
_DETECTION: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("pipeline", "modelyard.runtimes.pipeline", frozenset()),  # a Pipeline object imports it
    ("onnx", "onnx", frozenset({".onnx"})),
    ("xgboost", "xgboost", frozenset({".ubj", ".json"})),
    ("lightgbm", "lightgbm", frozenset({".txt"})),
    ("sklearn", "sklearn", PICKLE_SUFFIXES | {".skops"}),
)


def detect(obj: object) -> type[Runtime]:
    """The runtime class that saves ``obj``: an in-memory model or a path to a model file.

    Registered third-party runtimes are asked first, then the built-ins in a fixed order
    (python, onnx, xgboost, lightgbm, sklearn). A path to ``.pkl``/``.pickle``/``.joblib`` maps
    to the sklearn runtime in pickle format; such a version loads only with
    ``RuntimeOptions.allow_pickle``. Raises InvalidInputError when no runtime fits.
    """
    builtins = builtin_kinds()
    for kind, cls in registered().items():
        if kind not in builtins and cls.can_save(obj):
            return cls
    if _is_python_model(obj):
        return get_runtime_class("python")
    suffix = path_suffix(obj)
    for kind, package, suffixes in _DETECTION:
        # An object can only be an instance of an engine's class when the engine is already
        # imported, so sys.modules rules a kind out without importing anything.
        if package not in sys.modules and suffix not in suffixes:
            continue
        try:
            cls = get_runtime_class(kind)
        except MissingDependencyError:
            if suffix in suffixes:
                raise  # the file needs this engine: tell how to install it
            continue
        if cls.can_save(obj):
            return cls
    raise InvalidInputError(
        f"cannot find a runtime for {_describe(obj)}; expected a fitted scikit-learn, XGBoost or "
        "LightGBM model, an onnx.ModelProto, a modelyard PythonModel instance, or a path to a "
        "model file (.onnx, .skops, XGBoost .ubj/.json, LightGBM .txt, or .pkl/.joblib with "
        "allow_pickle)"
    )


def _describe(obj: object) -> str:
    if isinstance(obj, str):
        return f"path {obj!r} (not an existing file of a known format)"
    return f"an object of type {type(obj).__module__}.{type(obj).__qualname__}"
