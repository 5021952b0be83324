"""Batch scoring: a table of rows in, the same rows' predictions out, resumable.

``modelyard batch fraud@production --input s3://b/in/ --output s3://b/out/ --key id`` is
:func:`run_batch` with a :class:`~modelyard.jobs.scoring.LocalScorer` (or a
:class:`~modelyard.jobs.scoring.RemoteScorer` with ``--url``). The job:

1. resolves the model reference once and pins that version for the whole job;
2. lists the input files and cuts them into parts (:mod:`modelyard.jobs.batch_io`);
3. plans the column mapping from the schema and the signature, failing early on a missing or
   mistyped column (:mod:`modelyard.jobs.columns`);
4. loads the job manifest of the output directory, if any, and refuses a different job
   (:mod:`modelyard.jobs.manifest`);
5. for each part not yet done: streams record batches (read ahead on a thread), keeps up to
   ``in_flight`` batches in the scorer, writes the outputs with the key columns in input order,
   publishes the part file and records the part in the manifest.

Memory stays bounded by ``batch_rows`` x (``in_flight`` + read-ahead), whatever the input size.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError
from modelyard.jobs import batch_io
from modelyard.jobs.batch_io import Part, PartWriter
from modelyard.jobs.columns import (
    ROW_NUMBER,
    ROW_SOURCE,
    ColumnMapping,
    outputs_to_columns,
    plan_mapping,
)
from modelyard.jobs.manifest import JobManifest, load_manifest, save_manifest
from modelyard.jobs.scoring import Scorer
from modelyard.types import Array


@dataclass(frozen=True)
class BatchJob:
    """What to score and where to write it (the scorer says with which model)."""

    input: str
    output: str
    keys: tuple[str, ...] = ()
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    outputs: tuple[str, ...] | None = None
    batch_rows: int = 65_536
    part_rows: int = 1_000_000
    output_format: str = "parquet"
    in_flight: int = 2
    restart: bool = False
    storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("batch_rows", "part_rows", "in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                flag = "--" + name.replace("_", "-")
                raise InvalidInputError(f"{flag} must be a whole number >= 1, got {value!r}")
        if self.output_format not in ("parquet", "csv"):
            raise InvalidInputError(
                f"--output-format must be parquet or csv, got {self.output_format!r}"
            )


@dataclass
class BatchResult:
    model: str
    version: int
    output: str
    parts: int
    parts_skipped: int
    rows_scored: int
    rows_total: int
    seconds: float
    #: Which columns fed each model input (``{input: [columns]}``), as planned.
    inputs: dict[str, list[str]] = field(default_factory=dict)


class Progress(Protocol):
    """Where a job reports progress (the CLI draws a bar; tests record calls)."""

    def start(
        self, total_rows: int | None, done_rows: int, parts: int, parts_done: int
    ) -> None: ...

    def advance(self, rows: int) -> None: ...

    def part_done(self, part: Part, rows: int) -> None: ...

    def finish(self) -> None: ...


class _NoProgress:
    def start(self, total_rows: int | None, done_rows: int, parts: int, parts_done: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def part_done(self, part: Part, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass


def run_batch(
    job: BatchJob,
    scorer: Scorer,
    *,
    progress: Progress | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> BatchResult:
    """Score every part of ``job.input`` not yet done into ``job.output``; see the module doc."""
    progress = progress or _NoProgress()
    started = clock.monotonic()
    in_fs, files, parts, schema, mapping = _plan(job, scorer)
    out_fs, out_dir = batch_io.filesystem(job.output, job.storage_options)
    manifest = _open_manifest(job, scorer, files, mapping, out_fs, out_dir, clock)
    done_rows = sum(int(p.get("rows", 0)) for p in manifest.parts.values())
    known = [p.rows for p in parts]
    total = None if any(r is None for r in known) else sum(r or 0 for r in known)
    progress.start(total, done_rows, len(parts), len(manifest.parts))
    scored = skipped = 0
    try:
        for part in parts:
            if part.name in manifest.parts:
                skipped += 1
                continue
            rows, file_name = _score_part(
                job, scorer, mapping, schema, (in_fs, part), (out_fs, out_dir), progress
            )
            manifest.parts[part.name] = {
                "rows": rows,
                "file": file_name,
                "input": part.describe(),
                "done_at": clock.wall(),
            }
            manifest.updated_at = clock.wall()
            save_manifest(out_fs, out_dir, manifest)
            progress.part_done(part, rows)
            scored += rows
        manifest.state = "done"
        manifest.updated_at = clock.wall()
        save_manifest(out_fs, out_dir, manifest)
    finally:
        progress.finish()
    return BatchResult(
        model=scorer.model,
        version=scorer.version,
        output=job.output,
        parts=len(parts),
        parts_skipped=skipped,
        rows_scored=scored,
        rows_total=sum(int(p.get("rows", 0)) for p in manifest.parts.values()),
        seconds=clock.monotonic() - started,
        inputs={b.name: list(b.columns) for b in mapping.bindings},
    )


def _plan(
    job: BatchJob, scorer: Scorer
) -> tuple[Any, list[batch_io.InputFile], list[Part], pa.Schema, ColumnMapping]:
    """List the input, cut it into parts, and plan the column mapping (checked against every
    Parquet file's schema now; CSV blocks are checked as they are read)."""
    in_fs, files = batch_io.discover(job.input, job.storage_options)
    parts = batch_io.plan_parts(in_fs, files, job.part_rows)
    schema = batch_io.read_schema(in_fs, files[0])
    mapping = plan_mapping(
        schema,
        scorer.signature,
        keys=job.keys,
        columns=job.columns,
        feature_names=scorer.feature_names,
        outputs=job.outputs,
        where=files[0].rel,
    )
    for file in files[1:]:
        if file.format == "parquet":
            mapping.check_schema(batch_io.read_schema(in_fs, file), file.rel)
    return in_fs, files, parts, schema, mapping


def _open_manifest(
    job: BatchJob,
    scorer: Scorer,
    files: list[batch_io.InputFile],
    mapping: ColumnMapping,
    fs: Any,
    out_dir: str,
    clock: Clock,
) -> JobManifest:
    identity = {
        "model": scorer.model,
        "version": scorer.version,
        "input": job.input,
        "files": [f.fingerprint() for f in files],
        "part_rows": job.part_rows,
        "mapping": mapping.describe(),
        "output_format": job.output_format,
    }
    existing = None if job.restart else load_manifest(fs, out_dir)
    if existing is not None:
        existing.check_same_job(identity, f"--output {job.output}")
        batch_io.remove_stale_temps(fs, out_dir)
        return existing
    if job.restart:
        _discard_output(fs, out_dir)
    elif fs.exists(out_dir) and fs.isdir(out_dir) and fs.ls(out_dir, detail=False):
        raise InvalidInputError(
            f"--output {job.output} is not empty and holds no job manifest; choose an empty or "
            "new location"
        )
    fs.makedirs(out_dir, exist_ok=True)
    now = clock.wall()
    manifest = JobManifest(identity=identity, created_at=now, updated_at=now)
    save_manifest(fs, out_dir, manifest)
    return manifest


def _discard_output(fs: Any, out_dir: str) -> None:
    """``--restart``: drop the parts and manifest of the previous job (nothing else)."""
    if not fs.exists(out_dir):
        return
    for path in fs.ls(out_dir, detail=False):
        base = path.rsplit("/", 1)[-1]
        if base.startswith(("part-", ".part-", "_modelyard_job.json")):
            fs.rm(path)


def _score_part(
    job: BatchJob,
    scorer: Scorer,
    mapping: ColumnMapping,
    schema: pa.Schema,
    source: tuple[Any, Part],
    target: tuple[Any, str],
    progress: Progress,
) -> tuple[int, str | None]:
    """Score one part into its output file; returns (rows, file name or None when empty)."""
    in_fs, part = source
    out_fs, out_dir = target
    writer = PartWriter(out_fs, out_dir, part.name, job.output_format)
    where = part.describe()
    window: deque[tuple[pa.RecordBatch, int, concurrent.futures.Future[dict[str, Array]]]] = deque()
    offset = 0

    def drain_one() -> None:
        batch, first, future = window.popleft()
        outputs = future.result()
        writer.write(_output_batch(batch, first, outputs, mapping, part))
        progress.advance(batch.num_rows)

    try:
        reader = batch_io.read_part(in_fs, part, mapping.columns(), job.batch_rows, schema)
        with _read_ahead(reader, depth=2) as batches:
            for batch in batches:
                if part.file.format == "csv":
                    mapping.check_schema(batch.schema, where)
                inputs = mapping.to_inputs(batch, where)
                window.append((batch, offset, scorer.submit(inputs, mapping.outputs)))
                offset += batch.num_rows
                if len(window) >= job.in_flight:
                    drain_one()
            while window:
                drain_one()
        return writer.rows, writer.commit()
    except BaseException:
        for _, _, future in window:
            future.cancel()
        writer.abort()
        raise


def _output_batch(
    batch: pa.RecordBatch,
    first_row: int,
    outputs: Mapping[str, Array],
    mapping: ColumnMapping,
    part: Part,
) -> pa.RecordBatch:
    rows = batch.num_rows
    for name in mapping.outputs:
        got = outputs[name].shape[0] if outputs[name].ndim else None
        if got != rows:
            raise InvalidInputError(
                f"model output '{name}' has {got} rows for {rows} input rows in "
                f"{part.describe()}; a batch job needs one output row per input row"
            )
    names: list[str] = []
    arrays: list[pa.Array] = []
    if mapping.keys:
        for key in mapping.keys:
            names.append(key)
            arrays.append(batch.column(key))
    else:
        start = part.first_row + first_row
        names += [ROW_SOURCE, ROW_NUMBER]
        arrays += [
            pa.array([part.file.rel] * rows, type=pa.string()).dictionary_encode(),
            pa.array(range(start, start + rows), type=pa.int64()),
        ]
    names += mapping.outputs
    arrays += outputs_to_columns(outputs, mapping.outputs)
    return pa.RecordBatch.from_arrays(arrays, names=names)


@contextlib.contextmanager
def _read_ahead(source: Iterator[pa.RecordBatch], depth: int) -> Iterator[Iterator[pa.RecordBatch]]:
    """Read the next ``depth`` batches on a thread while the current ones are scored (Arrow
    decodes without the GIL, so reading overlaps inference)."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump() -> None:
        try:
            for batch in source:
                while not stop.is_set():
                    try:
                        items.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(("end", None))
        except BaseException as exc:
            items.put(("error", exc))

    thread = threading.Thread(target=pump, name="modelyard-batch-read", daemon=True)
    thread.start()

    def consume() -> Iterator[pa.RecordBatch]:
        while True:
            kind, value = items.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    try:
        yield consume()
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.1)
        thread.join()
        close = getattr(source, "close", None)
        if close is not None:
            close()
