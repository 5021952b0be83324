"""Materialised predictions: score a bounded input domain once, into a SQL table.

``modelyard materialize fraud@production --input keys.parquet --table fraud_scores --key id``
reads the rows (a CSV or Parquet file or directory, local or ``s3://``; a ``.json`` file or
inline JSON text holding a list of row objects), maps columns to the model's inputs exactly as
``modelyard batch`` does (:mod:`modelyard.jobs.columns`), scores them through the serving core
(:class:`~modelyard.jobs.scoring.LocalScorer`: registry, model cache, signature checks,
batcher), and upserts one row per input row into table ``T`` of ``--db`` (SQLite or
PostgreSQL; default: the registry's database), stamped with the model and the version that
computed it. Rerunning is idempotent: a key's row is replaced, never duplicated; rerunning after
the alias moved restamps every row with the new version.

An endpoint route with ``materialized: {table: T}`` then serves these rows
(:mod:`modelyard.traffic.materialized`, which also defines the table layout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pyarrow as pa  # type: ignore[import-untyped]

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError, ModelYardError, UnavailableError
from modelyard.jobs import batch_io
from modelyard.jobs.columns import plan_mapping
from modelyard.jobs.scoring import Scorer
from modelyard.registry.store import Store
from modelyard.traffic.materialized import (
    check_table,
    encode_row_outputs,
    ensure_table,
    row_digests,
    upsert_rows,
)

__all__ = ["MaterializeJob", "MaterializeResult", "materialize"]

T = TypeVar("T")


@dataclass(frozen=True)
class MaterializeJob:
    """What to score and where to put it. ``columns``: input name -> columns (``""`` = the
    model's only matrix input), as ``modelyard batch --columns``."""

    input: str
    table: str
    key: str = "id"
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    batch_rows: int = 8192
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_table(self.table)
        if self.batch_rows < 1:
            raise InvalidInputError(f"--batch-rows must be >= 1, got {self.batch_rows}")
        if not self.key:
            raise InvalidInputError("--key must name the key column")


@dataclass(frozen=True)
class MaterializeResult:
    model: str
    version: int
    rows: int
    table: str
    db: str
    seconds: float


def materialize(
    job: MaterializeJob, scorer: Scorer, store: Store, *, clock: Clock = SYSTEM_CLOCK
) -> MaterializeResult:
    """Score every row of ``job.input`` with ``scorer`` and upsert it into ``job.table``."""
    started = clock.monotonic()
    schema, batches = _read(job)
    mapping = plan_mapping(
        schema,
        scorer.signature,
        keys=(job.key,),
        columns=job.columns,
        feature_names=scorer.feature_names,
        where=_describe(job.input),
    )
    _on_db(store, ensure_table, store, job.table)
    total = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        inputs = mapping.to_inputs(batch, _describe(job.input))
        outputs = scorer.submit(inputs).result()
        keys = [_key_text(v, job.key) for v in batch.column(job.key).to_pylist()]
        digests = row_digests(inputs)
        now = clock.wall()
        rows = [
            (scorer.model, key, scorer.version, digest, encode_row_outputs(outputs, i), now)
            for i, (key, digest) in enumerate(zip(keys, digests, strict=True))
        ]
        total += _on_db(store, upsert_rows, store, job.table, rows)
    return MaterializeResult(
        scorer.model,
        scorer.version,
        total,
        job.table,
        store.describe(),
        clock.monotonic() - started,
    )


def _on_db(store: Store, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``, with a database driver's own errors as UnavailableError."""
    try:
        return call(*args)
    except ModelYardError:
        raise
    except Exception as exc:
        raise UnavailableError(f"--db {store.describe()}: {exc}") from exc


def _key_text(value: object, column: str) -> str:
    if value is None:
        raise InvalidInputError(f"key column '{column}' has an empty value")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _describe(text: str) -> str:
    return "--input" if text.lstrip().startswith("[") else text


# ---- input ------------------------------------------------------------------------------------
def _read(job: MaterializeJob) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    text = job.input.strip()
    if text.startswith("[") or text.lower().endswith(".json"):
        table = _json_rows(text)
        return table.schema, iter(table.to_batches(max_chunksize=job.batch_rows))
    fs, files = batch_io.discover(job.input, job.storage_options)
    schema = batch_io.read_schema(fs, files[0])

    def batches() -> Iterator[pa.RecordBatch]:
        for part in batch_io.plan_parts(fs, files, part_rows=1 << 62):
            yield from batch_io.read_part(fs, part, schema.names, job.batch_rows, schema)

    return schema, batches()


def _json_rows(text: str) -> pa.Table:
    """Inline JSON text, or a ``.json`` file, holding a list of row objects."""
    source = "--input"
    if not text.startswith("["):
        path = Path(text)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InvalidInputError(f"--input {path}: {exc}") from exc
        source = f"--input {path}"
    try:
        rows = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise InvalidInputError(f"{source} must be a non-empty JSON list of row objects")
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{source}: the rows do not form a table: {exc}") from exc
