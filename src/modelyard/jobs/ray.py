"""Batch scoring on Ray Data: a callable class for ``Dataset.map_batches``.

.. code-block:: python

    ds.map_batches(
        RayBatchScorer,
        fn_constructor_kwargs={"model": "fraud@production", "registry": "postgresql://..."},
        batch_format="pyarrow",     # or "numpy" / "pandas"
        concurrency=2,
        num_cpus=0.5,               # fractional on small machines, or the actor pool stalls
    )

Ray builds one instance per actor; the constructor resolves and pins the version and loads it
(once per actor process, through the same model cache and serving core as a server). Each call
scores one batch and returns the same format it was given: the kept columns (default: all)
followed by the model's outputs. The column mapping is planned from the first batch's schema and
reused. Ray itself is not imported here: any object with the batch formats above works.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from modelyard.errors import InvalidInputError
from modelyard.jobs.frames import FrameScorer, plan_frame_scorer
from modelyard.jobs.scoring import shared_predictor
from modelyard.settings import Settings, load_settings


class RayBatchScorer:
    """Scores batches given as an Arrow table, a dict of numpy arrays, or a pandas DataFrame."""

    def __init__(
        self,
        model: str,
        *,
        keep: Sequence[str] | None = None,
        columns: dict[str, tuple[str, ...]] | None = None,
        outputs: Sequence[str] | None = None,
        registry: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        from modelyard.cli_predict import parse_model_ref
        from modelyard.registry.registry import Registry

        self._settings = settings or load_settings(registry=registry)
        self._model = model
        self._options: dict[str, Any] = {"keep": keep, "columns": columns, "outputs": outputs}
        name, ref = parse_model_ref(model)
        with Registry.from_settings(self._settings) as reg:
            mv = reg.resolve(name, ref)
        self._pinned = f"{mv.model}:{mv.version}"
        # Load now: an actor that cannot load its model fails at start, not on its first batch.
        shared_predictor(self._settings, mv.model, mv.version)
        self._plan: FrameScorer | None = None

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, pa.Table):
            return pa.Table.from_batches([self._score(batch)])
        if isinstance(batch, Mapping):
            table = pa.table({name: _column(name, values) for name, values in batch.items()})
            scored = self._score(table)
            return {name: _numpy(scored.column(name)) for name in scored.schema.names}
        if hasattr(batch, "columns") and hasattr(batch, "to_numpy"):  # a pandas DataFrame
            table = pa.Table.from_pandas(batch, preserve_index=False)
            return pa.Table.from_batches([self._score(table)]).to_pandas()
        raise InvalidInputError(
            f"RayBatchScorer takes pyarrow, numpy or pandas batches, got {type(batch).__name__}"
        )

    def _score(self, table: pa.Table) -> pa.RecordBatch:
        batches = table.combine_chunks().to_batches()
        batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
        if self._plan is None:
            self._plan = plan_frame_scorer(
                self._settings, self._pinned, batch.schema, **self._options
            )
        return self._plan.score(batch)


def _column(name: str, values: Any) -> pa.Array:
    array = np.asarray(values)
    if array.ndim == 1:
        return pa.array(array)
    if array.ndim == 2:  # a tensor column: one fixed-size list per row
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])
    raise InvalidInputError(f"column '{name}' has {array.ndim} dimensions; give 1-D or 2-D arrays")


def _numpy(column: pa.Array) -> Any:
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
        rows = len(column)
        flat = column.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(rows, -1) if rows else flat.reshape(0, 0)
    return column.to_numpy(zero_copy_only=False)
