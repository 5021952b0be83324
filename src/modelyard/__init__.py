"""ModelYard: serve hundreds of ML models from one registry, fast, and manage traffic between
their versions.

The public API is the names in ``__all__`` (pinned by a test); everything else is internal.
Heavy modules are imported on first use, so ``import modelyard`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Datatype",
    "InferRequest",
    "InferResponse",
    "Manifest",
    "ModelVersion",
    "ModelYardError",
    "PythonModel",
    "Registry",
    "Runtime",
    "Settings",
    "Signature",
    "TensorSpec",
    "__version__",
    "load",
]

_LAZY = {
    "Datatype": "modelyard.types",
    "InferRequest": "modelyard.types",
    "InferResponse": "modelyard.types",
    "Signature": "modelyard.types",
    "TensorSpec": "modelyard.types",
    "Manifest": "modelyard.manifest",
    "ModelVersion": "modelyard.registry.registry",
    "Registry": "modelyard.registry.registry",
    "ModelYardError": "modelyard.errors",
    "PythonModel": "modelyard.runtimes.python",
    "Runtime": "modelyard.runtime",
    "Settings": "modelyard.settings",
    "load": "modelyard.embedded",
}

if TYPE_CHECKING:
    from modelyard.embedded import load
    from modelyard.errors import ModelYardError
    from modelyard.manifest import Manifest
    from modelyard.registry.registry import ModelVersion, Registry
    from modelyard.runtime import Runtime
    from modelyard.runtimes.python import PythonModel
    from modelyard.settings import Settings
    from modelyard.types import Datatype, InferRequest, InferResponse, Signature, TensorSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
