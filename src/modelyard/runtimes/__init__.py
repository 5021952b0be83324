"""Runtimes: adapters from ModelYard to inference engines, and the registry of runtime kinds.

* :func:`get_runtime_class` — the class of a kind named in a manifest (``onnx``, ``sklearn``,
  ``xgboost``, ``lightgbm``, ``python`` or a registered plug-in), imported on first use;
* :func:`detect` — the class that can save an in-memory model or a model file;
* :func:`register` — add a third-party runtime (a :class:`modelyard.runtime.Runtime` subclass);
* :class:`PythonModel` — the base class of custom Python models.

Importing this package does not import scikit-learn, XGBoost or LightGBM.
"""

from __future__ import annotations

from modelyard.runtimes._detect import detect
from modelyard.runtimes._registry import get_runtime_class, known_kinds, register
from modelyard.runtimes.python import PythonModel

__all__ = ["PythonModel", "detect", "get_runtime_class", "known_kinds", "register"]
