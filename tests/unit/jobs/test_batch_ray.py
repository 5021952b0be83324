"""The Ray Data callable, exercised without Ray: Ray only constructs it and calls it per batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelyard.errors import InvalidInputError, ModelNotFoundError
from modelyard.jobs.ray import RayBatchScorer
from tests.unit.jobs.conftest import FEATURES, expected_output, feature_table


def test_arrow_batches_keep_every_column_and_append_outputs(linear_registry: str) -> None:
    features = tuple(f"f{j}" for j in range(FEATURES))
    # Keeping every column keeps "id" among the candidates for features: name them.
    scorer = RayBatchScorer("linear@production", columns={"": features}, registry=linear_registry)
    table = feature_table(50)
    out = scorer(table)
    assert isinstance(out, pa.Table)
    assert out.column_names == [*table.column_names, "output"]
    ids = out.column("id").to_numpy()
    np.testing.assert_allclose(out.column("output").to_numpy(), expected_output(ids), rtol=1e-6)


def test_numpy_and_pandas_batches_come_back_in_their_format(linear_registry: str) -> None:
    scorer = RayBatchScorer("linear", keep=["id"], registry=linear_registry)
    table = feature_table(8, start=100)
    as_numpy = {name: table.column(name).to_numpy() for name in table.column_names}
    out = scorer(as_numpy)
    assert sorted(out) == ["id", "output"]
    np.testing.assert_allclose(out["output"], expected_output(out["id"]), rtol=1e-6)
    frame = scorer(table.to_pandas())
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["id", "output"]


def test_a_tensor_column_feeds_a_matrix_input(linear_registry: str) -> None:
    scorer = RayBatchScorer("linear", keep=["id"], registry=linear_registry)
    x = np.ones((3, FEATURES), dtype=np.float32)
    out = scorer({"id": np.arange(3), "input": x})
    np.testing.assert_array_equal(out["output"], [20.0, 20.0, 20.0])


def test_errors(linear_registry: str) -> None:
    with pytest.raises(ModelNotFoundError):
        RayBatchScorer("nope", registry=linear_registry)
    scorer = RayBatchScorer("linear", registry=linear_registry)
    with pytest.raises(InvalidInputError, match="takes pyarrow, numpy or pandas batches"):
        scorer([1, 2, 3])
    with pytest.raises(InvalidInputError, match="takes 20 feature columns"):
        scorer({"a": np.ones(3)})
