"""Files of a batch job: finding the input parts, streaming them, writing output parts atomically.

Inputs are Parquet or CSV files, or directories of them, on any fsspec filesystem (local paths,
``file://``, ``s3://``). Files whose name starts with ``_`` or ``.`` are skipped (``_SUCCESS``
markers, temporary files), the rest is sorted by path so every run sees the same order.

A **part** is the unit of work and of resumption: a range of Parquet row groups holding at
least ``part_rows`` rows, or one whole CSV file. Its output is one file, named by its index,
written completely before it becomes visible (temporary name + rename on a local disk; on object
stores a single object, which appears only when its upload completes). Reading is streamed in
record batches, so memory is bounded by the batch size, not by the file size.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from modelyard.errors import InvalidInputError, NotFoundError, UnavailableError

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
CSV_BLOCK_BYTES = 8 * 1024 * 1024
PARQUET_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file: its path on the filesystem, path relative to the input root, format and
    a fingerprint (size + modification stamp) to notice a changed input on a rerun."""

    path: str
    rel: str
    format: str
    size: int
    stamp: str

    def fingerprint(self) -> dict[str, Any]:
        return {"rel": self.rel, "size": self.size, "stamp": self.stamp}


@dataclass(frozen=True, slots=True)
class Part:
    """Rows ``first_row`` .. ``first_row + rows`` of ``file`` (row groups ``row_groups`` of a
    Parquet file; None = the whole file). ``rows`` is None when unknown before reading (CSV)."""

    index: int
    file: InputFile
    row_groups: tuple[int, int] | None
    first_row: int
    rows: int | None

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    def describe(self) -> str:
        if self.row_groups is None:
            return self.file.rel
        start, stop = self.row_groups
        return f"{self.file.rel} (row groups {start}-{stop - 1})"


def filesystem(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path on it (``storage_options`` are for
    remote filesystems only)."""
    local = "://" not in url or url.startswith("file://")
    try:
        fs, path = fsspec.core.url_to_fs(url, **({} if local else dict(storage_options or {})))
    except (ImportError, ValueError) as exc:
        raise InvalidInputError(f"{url}: {exc}") from exc
    return fs, str(path)


def is_local(fs: Any) -> bool:
    return "file" in _protocols(fs)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def discover(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, list[InputFile]]:
    """The input files under ``url`` (a file or a directory), sorted by path."""
    fs, root = filesystem(url, storage_options)
    try:
        if not fs.exists(root):
            raise NotFoundError(f"--input {url} does not exist")
        if fs.isdir(root):
            found = sorted(fs.find(root, detail=True).items())
            prefix = root.rstrip("/") + "/"
        else:
            found = [(root, fs.info(root))]
            prefix = root.rsplit("/", 1)[0] + "/" if "/" in root else ""
    except OSError as exc:
        raise UnavailableError(f"--input {url}: {exc}") from exc
    files: list[InputFile] = []
    for path, info in found:
        rel = path[len(prefix) :] if path.startswith(prefix) else path
        if (
            any(part.startswith(("_", ".")) for part in rel.split("/"))
            or info.get("type") == "directory"
        ):
            continue
        fmt = _format_of(path)
        if fmt is None:
            continue
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        files.append(InputFile(path, rel, fmt, int(info.get("size") or 0), str(stamp)))
    if not files:
        raise InvalidInputError(f"--input {url} holds no .parquet or .csv files")
    if len({f.format for f in files}) > 1:
        raise InvalidInputError(f"--input {url} mixes Parquet and CSV files; score them apart")
    return fs, files


def _format_of(path: str) -> str | None:
    lower = path.lower()
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    return None


def _open_parquet(fs: Any, file: InputFile) -> pq.ParquetFile:
    try:
        source = file.path if is_local(fs) else fs.open(file.path, "rb")
        # A buffered stream reads column chunks piece by piece: memory stays bounded even
        # when one row group is larger than the batch by far.
        return pq.ParquetFile(source, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"{file.rel} is not a readable Parquet file: {exc}") from exc


def plan_parts(fs: Any, files: list[InputFile], part_rows: int) -> list[Part]:
    """Cut the files into parts of at least ``part_rows`` rows (whole row groups; whole CSV
    files). Parquet row counts come from the footers, nothing else is read."""
    parts: list[Part] = []
    for file in files:
        if file.format == "csv":
            parts.append(Part(len(parts), file, None, 0, None))
            continue
        meta = _open_parquet(fs, file).metadata
        start = first = rows = 0
        for group in range(meta.num_row_groups):
            rows += meta.row_group(group).num_rows
            if rows >= part_rows or group == meta.num_row_groups - 1:
                parts.append(Part(len(parts), file, (start, group + 1), first, rows))
                first += rows
                start, rows = group + 1, 0
        if meta.num_row_groups == 0:
            parts.append(Part(len(parts), file, (0, 0), 0, 0))
    return parts


def read_schema(fs: Any, file: InputFile) -> pa.Schema:
    """The Arrow schema of one input file (a CSV file's types are inferred from its start)."""
    if file.format == "parquet":
        schema: pa.Schema = _open_parquet(fs, file).schema_arrow
        return schema
    with fs.open(file.path, "rb") as handle:
        try:
            reader = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(block_size=1 << 20))
        except pa.ArrowException as exc:
            raise InvalidInputError(f"{file.rel} is not a readable CSV file: {exc}") from exc
        csv_schema: pa.Schema = reader.schema
        reader.close()
        return csv_schema


def read_part(
    fs: Any, part: Part, columns: list[str], batch_rows: int, schema: pa.Schema | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream the rows of ``part`` (only ``columns``) in record batches of at most
    ``batch_rows`` rows. ``schema`` pins CSV column types (inference is per block)."""
    if part.file.format == "parquet":
        assert part.row_groups is not None
        start, stop = part.row_groups
        if stop == start:
            return
        pf = _open_parquet(fs, part.file)
        try:
            yield from pf.iter_batches(
                batch_size=batch_rows, row_groups=range(start, stop), columns=columns
            )
        except pa.ArrowException as exc:
            raise InvalidInputError(f"reading {part.describe()}: {exc}") from exc
        finally:
            pf.close()
        return
    yield from _read_csv(fs, part.file, columns, batch_rows, schema)


def _read_csv(
    fs: Any, file: InputFile, columns: list[str], batch_rows: int, schema: pa.Schema | None
) -> Iterator[pa.RecordBatch]:
    types = {f.name: f.type for f in schema if f.name in columns} if schema is not None else None
    convert = pacsv.ConvertOptions(include_columns=columns, column_types=types)
    with fs.open(file.path, "rb") as handle:
        try:
            reader = pacsv.open_csv(
                handle,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=convert,
            )
            for batch in reader:
                for offset in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(offset, batch_rows)
        except pa.ArrowException as exc:
            raise InvalidInputError(f"reading {file.rel}: {exc}") from exc


# ---- output ------------------------------------------------------------------------------------
class PartWriter:
    """Writes one output part under a temporary name and publishes it on :meth:`commit`.

    Parquet is written row group by row group as batches arrive; CSV expands list columns into
    ``name_0 .. name_{n-1}`` (CSV has no lists).
    """

    def __init__(self, fs: Any, directory: str, name: str, fmt: str) -> None:
        self.fs = fs
        self.fmt = fmt
        self.final = f"{directory.rstrip('/')}/{name}.{fmt}"
        # Object stores publish an object when its upload completes: no rename needed there.
        self._temp = (
            f"{directory.rstrip('/')}/.{name}.{fmt}.tmp-{uuid.uuid4().hex[:8]}"
            if is_local(fs)
            else self.final
        )
        self._handle: Any = None
        self._writer: Any = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt == "csv":
            batch = _flatten_lists(batch)
        if self._writer is None:
            # Local files go through Arrow's native IO; others through an fsspec handle.
            if is_local(self.fs):
                sink: Any = self._temp
            else:
                sink = self._handle = self.fs.open(self._temp, "wb")
            if self.fmt == "parquet":
                self._writer = pq.ParquetWriter(
                    sink, batch.schema, use_dictionary=_dictionary_columns(batch.schema)
                )
            else:
                self._writer = pacsv.CSVWriter(sink, batch.schema)
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def commit(self) -> str | None:
        """Close and publish the file; returns its name, or None for a part without rows
        (no file: an empty file would need a schema that only data gives)."""
        if self._writer is None:
            return None
        self._writer.close()
        if self._handle is not None:
            self._handle.close()
        if self._temp != self.final:
            os.replace(self._temp, self.final)
        return self.final.rsplit("/", 1)[-1]

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
            if self._handle is not None:
                self._handle.close()
        with contextlib.suppress(Exception):
            if self._temp != self.final and self.fs.exists(self._temp):
                self.fs.rm(self._temp)


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Dictionary encoding pays off for repeated text; on numbers (predictions, ids) it costs
    most of the write time and saves little."""
    return [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]


def _flatten_lists(batch: pa.RecordBatch) -> pa.RecordBatch:
    arrays: list[pa.Array] = []
    names: list[str] = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_fixed_size_list(column.type):
            width = column.type.list_size
            flat = column.flatten()
            for i in range(width):
                arrays.append(flat.take(pa.array(range(i, len(flat), width))))
                names.append(f"{name}_{i}")
        else:
            arrays.append(column)
            names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def write_text_atomically(fs: Any, path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text`` so readers see the old or the new file."""
    if not is_local(fs):
        with fs.open(path, "wb") as handle:
            handle.write(text.encode())
        return
    temp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(temp, "wb") as handle:
        handle.write(text.encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def remove_stale_temps(fs: Any, directory: str) -> None:
    """Temporary files left by a run that was killed: never published, safe to delete."""
    if not is_local(fs) or not fs.exists(directory):
        return
    for path in fs.ls(directory, detail=False):
        if ".tmp-" in path.rsplit("/", 1)[-1]:
            with contextlib.suppress(OSError):
                fs.rm(path)
