"""A fake MLflow registry for unit tests: model directories as MLflow writes them (an MLmodel
file and the flavor's files), versions and aliases in dicts."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
import yaml
from sklearn.linear_model import LogisticRegression

from modelyard.errors import ModelNotFoundError
from modelyard.registry.mlflow_source import MlflowRef, MlflowVersion

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]] * 4)
Y = np.array([0, 2, 1] * 4)
ONNX_FLAVOR = {"onnx": {"data": "model.onnx"}, "python_function": {"data": "model.onnx"}}


@dataclass
class FakeMlflow:
    """Model directories by (name, version), aliases by (name, alias); counts downloads."""

    root: Path
    tracking_uri: str = "http://mlflow.test:5000"
    models: dict[tuple[str, int], Path] = field(default_factory=dict)
    aliases: dict[tuple[str, str], int] = field(default_factory=dict)
    downloads: int = 0

    def add(self, name: str, flavors: dict[str, Any], files: dict[str, bytes]) -> int:
        version = 1 + max((v for n, v in self.models if n == name), default=0)
        directory = self.root / f"{name}-{version}"
        directory.mkdir(parents=True)
        (directory / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
        for filename, data in files.items():
            (directory / filename).write_bytes(data)
        self.models[name, version] = directory
        return version

    def resolve(self, ref: MlflowRef) -> MlflowVersion:
        version = ref.version if ref.alias is None else self.aliases.get((ref.name, ref.alias))
        if version is None or (ref.name, version) not in self.models:
            raise ModelNotFoundError(f"MLflow has no {ref}")
        return MlflowVersion(ref.name, version, f"runs:/r{version}/model", f"r{version}")

    def download(self, version: MlflowVersion, destination: Path) -> Path:
        self.downloads += 1
        target = destination / "model"
        shutil.copytree(self.models[version.name, version.version], target)
        return target


def onnx_bytes(seed: int = 0) -> bytes:
    from skl2onnx import to_onnx

    model = LogisticRegression(max_iter=500, C=1.0 + seed).fit(X, Y)
    return to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False}).SerializeToString()


def skops_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "m.skops"
    skops.io.dump(LogisticRegression(max_iter=500).fit(X, Y), path)
    return path.read_bytes()


ONNX_FLAVOR = {"onnx": {"data": "model.onnx"}, "python_function": {"data": "model.onnx"}}
