"""Where payload-log records go: rotating JSONL files (default), Parquet files, a Redis stream.

Files are named ``payloads-<replica>-<UTC start time>-<n>.<ext>`` so several processes can share
one directory. A file is rotated when the next batch would take it past ``max_bytes`` or when it
has been open ``rotate_s`` seconds. JSONL lines are written and flushed batch by batch; a Parquet
file only becomes readable when it is closed, so it is written as ``….parquet.part`` and renamed
then. Each sink is used by one writer thread only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError, install_hint
from modelyard.monitoring.payload_log import PayloadSink
from modelyard.settings import Settings

DEFAULT_STREAM = "modelyard:payloads"
DEFAULT_MAXLEN = 1_000_000


class _RotatingFiles:
    """File naming and the rotation decision, shared by the file sinks."""

    def __init__(
        self,
        directory: str | Path,
        replica: str,
        ext: str,
        max_bytes: int,
        rotate_s: float,
        clock: Clock,
    ) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = f"payloads-{_safe(replica)}"
        self.ext = ext
        self.max_bytes = max_bytes
        self.rotate_s = rotate_s
        self.clock = clock
        self.size = 0
        self.opened_at = 0.0
        self._seq = 0
        self.path: Path | None = None

    def due(self, incoming: int) -> bool:
        """Whether the open file (if any) must be closed before ``incoming`` more bytes."""
        if self.path is None:
            return False
        too_big = self.size > 0 and self.size + incoming > self.max_bytes
        return too_big or self.clock.monotonic() - self.opened_at >= self.rotate_s

    def next_path(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.clock.wall()))
        while True:
            self._seq += 1
            path = self.directory / f"{self.prefix}-{stamp}-{self._seq:04d}.{self.ext}"
            if not path.exists() and not path.with_name(path.name + ".part").exists():
                break
        self.path = path
        self.size = 0
        self.opened_at = self.clock.monotonic()
        return path


class JsonlSink:
    """One JSON object per line, rotating files."""

    def __init__(
        self,
        directory: str | Path,
        *,
        replica: str = "0",
        max_bytes: int = 64 * 1024**2,
        rotate_s: float = 3600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.files = _RotatingFiles(directory, replica, "jsonl", max_bytes, rotate_s, clock)
        self._file: IO[bytes] | None = None

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        data = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
        if self._file is None or self.files.due(len(data)):
            self.close()
            self._file = self.files.next_path().open("xb")
        self._file.write(data)
        self._file.flush()
        self.files.size += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


_PARQUET_FIELDS = (
    ("ts", "float64"),
    ("request_id", "string"),
    ("endpoint", "string"),
    ("model", "string"),
    ("version", "string"),
    ("route", "string"),
    ("code", "string"),
    ("latency_ms", "float64"),
    ("parameters", "string"),  # JSON
    ("inputs", "string"),  # JSON: {name: {datatype, shape, data}}
    ("outputs", "string"),  # JSON
)
_JSON_COLUMNS = ("parameters", "inputs", "outputs")


class ParquetSink:
    """Columnar files (pyarrow): one row group per batch; tensors as JSON strings."""

    def __init__(
        self,
        directory: str | Path,
        *,
        replica: str = "0",
        max_bytes: int = 64 * 1024**2,
        rotate_s: float = 3600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        try:
            import pyarrow as pa  # type: ignore[import-untyped]
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError as exc:
            raise install_hint("pyarrow", "parquet") from exc
        self._pa = pa
        self._pq = pq
        self._schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _PARQUET_FIELDS])
        self.files = _RotatingFiles(directory, replica, "parquet", max_bytes, rotate_s, clock)
        self._writer: Any = None
        self._part: Path | None = None

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name, _ in _PARQUET_FIELDS}
        for record in records:
            for name, values in columns.items():
                value = record.get(name)
                values.append(orjson.dumps(value).decode() if name in _JSON_COLUMNS else value)
        table = self._pa.Table.from_pydict(columns, schema=self._schema)
        if self._writer is None or self.files.due(table.nbytes):
            self.close()
            final = self.files.next_path()
            self._part = final.with_name(final.name + ".part")
            self._writer = self._pq.ParquetWriter(str(self._part), self._schema)
        self._writer.write_table(table)
        assert self._part is not None
        self.files.size = self._part.stat().st_size

    def close(self) -> None:
        if self._writer is not None and self._part is not None and self.files.path is not None:
            self._writer.close()
            os.replace(self._part, self.files.path)
        self._writer = None
        self._part = None


class RedisSink:
    """``XADD`` to a Redis stream: one entry per record, field ``record`` = the JSON.

    URL: ``redis://host:port/db?stream=NAME&maxlen=N`` (``stream`` defaults to
    ``modelyard:payloads``; ``maxlen`` caps the stream approximately, default 1,000,000).
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError as exc:
            raise install_hint("redis", "redis") from exc
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.stream = query.pop("stream", DEFAULT_STREAM)
        try:
            self.maxlen = int(query.pop("maxlen", DEFAULT_MAXLEN))
        except ValueError as exc:
            raise InvalidInputError(f"payload_log: maxlen in {url!r} must be a number") from exc
        plain = urlunsplit(parts._replace(query=urlencode(query)))
        self.client = redis.Redis.from_url(plain)

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for record in records:
            pipe.xadd(
                self.stream, {"record": orjson.dumps(record)}, maxlen=self.maxlen, approximate=True
            )
        pipe.execute()

    def close(self) -> None:
        self.client.close()


def open_sink(settings: Settings, replica: str, clock: Clock = SYSTEM_CLOCK) -> PayloadSink:
    """The sink ``settings.payload_log`` names (a directory, file://…, or redis://…)."""
    target = settings.payload_log
    if not target:
        raise InvalidInputError("payload_log: no destination configured")
    if target.startswith(("redis://", "rediss://", "unix://")):
        return RedisSink(target)
    if "://" in target and not target.startswith("file://"):
        raise InvalidInputError(
            f"payload_log: {target!r} is neither a directory nor a redis:// URL"
        )
    directory = target.removeprefix("file://")
    options: dict[str, Any] = {
        "replica": replica,
        "max_bytes": settings.payload_log_max_bytes,
        "rotate_s": settings.payload_log_rotate_s,
        "clock": clock,
    }
    if settings.payload_log_format == "parquet":
        return ParquetSink(directory, **options)
    return JsonlSink(directory, **options)


def read_jsonl(directory: str | Path) -> Iterator[dict[str, Any]]:
    """Every record in a directory of JSONL payload logs, file by file (a torn last line of a
    file still being written is skipped)."""
    for path in sorted(Path(directory).glob("payloads-*.jsonl")):
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    yield orjson.loads(line)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
