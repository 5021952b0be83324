"""A real embedded registry (SQLite + local files in tmp_path) holding small ONNX models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.testmodels import identity_model, linear_fp32_model


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """``ident`` versions 1 and 2 (2 = production), ``linear`` version 1 (output ``output``)."""
    reg = Registry(tmp_path / "reg")
    ident = identity_model(Datatype.FP32, tmp_path / "m" / "ident.onnx")
    reg.push(ident, name="ident")
    reg.push(ident, name="ident", alias="production")
    reg.push(linear_fp32_model(tmp_path / "m" / "linear.onnx"), name="linear")
    yield reg
    reg.close()
