"""The public API is pinned: adding or removing a name is a deliberate change to this list."""

from __future__ import annotations

import subprocess
import sys

import modelyard

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert sorted(modelyard.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves() -> None:
    for name in PUBLIC:
        assert getattr(modelyard, name) is not None


def test_import_is_cheap() -> None:
    """`import modelyard` must not pull in optional engines or the server stack."""
    code = (
        "import sys, modelyard; heavy = [m for m in ('sklearn', 'xgboost', 'lightgbm', "
        "'onnxruntime', 'uvicorn', 'grpc') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
