"""Fixtures for offline-job tests: small tables written on the fly, a fake scorer, a registry."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.registry.registry import Registry
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.testmodels import linear_fp32_model

FEATURES = 20
LINEAR = Signature(
    inputs=(TensorSpec(name="input", datatype=Datatype.FP32, shape=(-1, FEATURES)),),
    outputs=(TensorSpec(name="output", datatype=Datatype.FP32, shape=(-1, 1)),),
)


def feature_table(rows: int, *, start: int = 0, features: int = FEATURES) -> pa.Table:
    """``id`` (start..start+rows) and float32 features f0..f{n-1} with f_j = id + j / 100."""
    ids = np.arange(start, start + rows, dtype=np.int64)
    columns: dict[str, Array] = {"id": ids}
    for j in range(features):
        columns[f"f{j}"] = (ids + j / 100).astype(np.float32)
    return pa.table(columns)


def write_parquet(path: Path, rows: int, *, start: int = 0, row_group_rows: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(feature_table(rows, start=start), path, row_group_size=row_group_rows)
    return path


def expected_output(ids: Array) -> Array:
    """What the linear model (sum of the features) gives for the rows of ``feature_table``."""
    return np.stack([(ids + j / 100).astype(np.float32) for j in range(FEATURES)], axis=1).sum(
        axis=1, dtype=np.float32
    )


class FakeScorer:
    """A Scorer that sums the features in the caller's thread; can fail on call N."""

    def __init__(self, *, version: int = 1, fail_on_call: int | None = None) -> None:
        self.model = "linear"
        self.version = version
        self.signature = LINEAR
        self.feature_names: dict[str, list[str]] = {}
        self.calls = 0
        self.rows = 0
        self._fail_on = fail_on_call

    def submit(
        self, inputs: dict[str, Array], outputs: Sequence[str] | None = None
    ) -> concurrent.futures.Future[dict[str, Array]]:
        self.calls += 1
        future: concurrent.futures.Future[dict[str, Array]] = concurrent.futures.Future()
        if self.calls == self._fail_on:
            future.set_exception(RuntimeError("scorer failed on purpose"))
            return future
        x = inputs["input"]
        self.rows += x.shape[0]
        future.set_result({"output": x.sum(axis=1, dtype=np.float32).reshape(-1, 1)})
        return future

    def close(self) -> None:
        pass


@pytest.fixture
def linear_registry(tmp_path: Path) -> Iterator[str]:
    """A registry directory holding model ``linear`` (20 features summed), alias production."""
    root = tmp_path / "registry"
    with Registry(root) as registry:
        model = linear_fp32_model(tmp_path / "linear.onnx", FEATURES)
        registry.push(model, name="linear", alias="production")
    yield str(root)
