"""Scoring one Arrow record batch in a worker process, for the distributed engines (Spark, Ray).

The engine owns the data and the cluster; ModelYard only scores what a worker is handed, with
the version the driver pinned and the column mapping the driver planned (so a missing column
fails on the driver, before any task runs). Each worker process loads the version once
(:func:`~modelyard.jobs.scoring.shared_predictor`) and reuses it for every batch of every task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from modelyard.errors import InvalidInputError
from modelyard.jobs.columns import ColumnMapping, outputs_to_columns, plan_mapping
from modelyard.settings import Settings
from modelyard.types import Datatype, Signature

_ARROW_TYPES: dict[Datatype, Any] = {
    Datatype.BOOL: pa.bool_(),
    Datatype.UINT8: pa.uint8(),
    Datatype.UINT16: pa.uint16(),
    Datatype.UINT32: pa.uint32(),
    Datatype.UINT64: pa.uint64(),
    Datatype.INT8: pa.int8(),
    Datatype.INT16: pa.int16(),
    Datatype.INT32: pa.int32(),
    Datatype.INT64: pa.int64(),
    Datatype.FP16: pa.float16(),
    Datatype.FP32: pa.float32(),
    Datatype.FP64: pa.float64(),
    Datatype.BYTES: pa.string(),
}


@dataclass(frozen=True)
class FrameScorer:
    """A picklable plan: the pinned version, the mapping, the columns passed through, and the
    output schema. Calling :meth:`score` in a worker scores one record batch."""

    settings: dict[str, Any]
    model: str
    version: int
    mapping: ColumnMapping
    passthrough: tuple[str, ...]
    schema: Any  # pa.Schema of the output batches

    def score(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        from modelyard.jobs.scoring import shared_predictor

        predictor = shared_predictor(Settings(**self.settings), self.model, self.version)
        if batch.num_rows == 0:
            return pa.RecordBatch.from_pylist([], schema=self.schema)
        inputs = self.mapping.to_inputs(batch, f"a batch of {self.model}:{self.version}")
        outputs = predictor.predict(inputs, outputs=self.mapping.outputs)
        arrays = [batch.column(name) for name in self.passthrough]
        arrays += outputs_to_columns(outputs, self.mapping.outputs)
        out = pa.RecordBatch.from_arrays(arrays, names=[*self.passthrough, *self.mapping.outputs])
        return pa.Table.from_batches([out]).cast(self.schema).combine_chunks().to_batches()[0]


def plan_frame_scorer(
    settings: Settings,
    model: str,
    schema: pa.Schema,
    *,
    keep: Sequence[str] | None = None,
    columns: dict[str, tuple[str, ...]] | None = None,
    outputs: Sequence[str] | None = None,
) -> FrameScorer:
    """Resolve ``model`` (pinning the version) and plan how ``schema``'s rows are scored.
    ``keep``: input columns copied to the output (default: all of them)."""
    from modelyard.cli_predict import parse_model_ref
    from modelyard.jobs.columns import feature_names_of
    from modelyard.registry.registry import Registry

    name, ref = parse_model_ref(model)
    with Registry.from_settings(settings) as registry:
        mv = registry.resolve(name, ref)
    signature = mv.manifest.signature
    passthrough = tuple(schema.names if keep is None else keep)
    # Columns kept on request are identifiers (not features); keeping everything keeps the
    # features too, so then nothing is excluded from the feature columns.
    mapping = plan_mapping(
        schema,
        signature,
        keys=() if keep is None else passthrough,
        columns=columns,
        feature_names=feature_names_of(mv.metadata, mv.manifest.runtime_options, signature),
        outputs=outputs,
        where="the data frame",
    )
    for name in mapping.outputs:
        if name in passthrough:
            raise InvalidInputError(
                f"model output '{name}' has the name of a column that is kept; rename the "
                "column or choose other outputs"
            )
    fields = [schema.field(n) for n in passthrough]
    fields += [pa.field(n, _output_type(signature, n)) for n in mapping.outputs]
    return FrameScorer(
        settings=settings.model_dump(mode="json"),
        model=mv.model,
        version=mv.version,
        mapping=mapping,
        passthrough=passthrough,
        schema=pa.schema(fields),
    )


def _output_type(signature: Signature, name: str) -> Any:
    spec = signature.output(name)
    if spec is None:  # plan_mapping checked the names
        raise InvalidInputError(f"model output '{name}' is not in the signature")
    base = _ARROW_TYPES[spec.datatype]
    trailing = spec.shape[1:]
    if not trailing or trailing == (1,):
        return base
    return pa.list_(base)
