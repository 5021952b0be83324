"""Runtime kinds by name: registration and lazy import of the built-in runtimes.

Built-in kinds (``onnx``, ``sklearn``, ``xgboost``, ``lightgbm``, ``python``) live in modules
imported on first use, so importing :mod:`modelyard.runtimes` never imports scikit-learn, XGBoost
or LightGBM (optional extras, slow to import).
"""

from __future__ import annotations

import importlib
import threading

from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    MissingDependencyError,
    install_hint,
)
from modelyard.runtime import Runtime

# kind -> (module, top-level engine packages whose absence means "not installed", install hint)
_BUILTIN: dict[str, tuple[str, frozenset[str], str]] = {
    "onnx": (
        "modelyard.runtimes.onnx",
        frozenset({"onnxruntime", "onnx"}),
        "onnxruntime is not installed; install it with: pip install onnxruntime onnx",
    ),
    "sklearn": (
        "modelyard.runtimes.sklearn",
        frozenset({"sklearn", "skops", "scipy", "joblib"}),
        install_hint("scikit-learn", "sklearn").message,
    ),
    "xgboost": (
        "modelyard.runtimes.xgboost",
        frozenset({"xgboost"}),
        install_hint("xgboost", "xgboost").message,
    ),
    "lightgbm": (
        "modelyard.runtimes.lightgbm",
        frozenset({"lightgbm"}),
        install_hint("lightgbm", "lightgbm").message,
    ),
    "python": ("modelyard.runtimes.python", frozenset(), ""),
    # Steps import their engines (onnxruntime, tokenizers) at load, with their own install hints.
    "pipeline": ("modelyard.runtimes.pipeline", frozenset(), ""),
}

_classes: dict[str, type[Runtime]] = {}
_lock = threading.RLock()


def register(cls: type[Runtime]) -> type[Runtime]:
    """Make ``cls`` the runtime of ``cls.kind``; usable as a class decorator.

    Third-party runtimes subclass :class:`modelyard.runtime.Runtime`, set ``kind`` and register.
    A later registration of the same kind wins, so a plug-in can replace a built-in runtime.
    """
    if not (isinstance(cls, type) and issubclass(cls, Runtime)):
        raise InvalidInputError(f"register: {cls!r} is not a subclass of modelyard Runtime")
    if not cls.kind:
        raise InvalidInputError(f"register: {cls.__qualname__} must set the class attribute kind")
    with _lock:
        _classes[cls.kind] = cls
    return cls


def builtin_kinds() -> tuple[str, ...]:
    return tuple(_BUILTIN)


def registered() -> dict[str, type[Runtime]]:
    """A snapshot of the runtime classes registered (or imported) so far, by kind."""
    with _lock:
        return dict(_classes)


def known_kinds() -> list[str]:
    """Every kind that can be asked for: built-in ones (installed or not) and registered ones."""
    with _lock:
        return sorted(set(_BUILTIN) | set(_classes))


def get_runtime_class(kind: str) -> type[Runtime]:
    """The runtime class of ``kind``, importing a built-in runtime's module on first use.

    Raises FailedPreconditionError for an unknown kind, and MissingDependencyError carrying the
    ``pip install`` hint when the engine of a built-in kind is not installed.
    """
    with _lock:
        cls = _classes.get(kind)
    if cls is not None:
        return cls
    builtin = _BUILTIN.get(kind)
    if builtin is None:
        raise FailedPreconditionError(
            f"unknown runtime kind {kind!r}; known kinds: {', '.join(known_kinds())}"
        )
    module, engines, hint = builtin
    # Imported without holding _lock: the module registers itself (taking _lock) while Python
    # holds its import lock, so holding both here could deadlock with a direct import.
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] in engines:
            raise MissingDependencyError(hint) from exc
        raise
    with _lock:
        cls = _classes.get(kind)
    if cls is None:  # pragma: no cover - every built-in module registers its kind
        raise FailedPreconditionError(f"module {module} did not register runtime {kind!r}")
    return cls
