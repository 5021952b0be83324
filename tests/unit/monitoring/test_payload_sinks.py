"""Payload-log sinks on local files: JSONL and Parquet rotation, naming, and sink selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError
from modelyard.monitoring.payload_sinks import (
    JsonlSink,
    ParquetSink,
    RedisSink,
    open_sink,
    read_jsonl,
)
from modelyard.settings import Settings


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "ts": 1.0,
            "request_id": f"r{i}",
            "endpoint": "e",
            "model": "m",
            "version": "1",
            "route": "",
            "code": "OK",
            "latency_ms": 0.5,
            "parameters": {},
            "inputs": {"x": {"datatype": "FP32", "shape": [1], "data": [float(i)]}},
            "outputs": {},
        }
        for i in range(start, start + n)
    ]


def test_jsonl_rotates_by_size_and_keeps_every_record(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path, replica="host/1", max_bytes=2000, clock=FakeClock())
    for i in range(20):
        sink.write(records(3, start=3 * i))
    sink.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) > 3
    assert all(f.name.startswith("payloads-host_1-") for f in files)
    assert all(f.stat().st_size <= 2000 for f in files)
    assert [r["request_id"] for r in read_jsonl(tmp_path)] == [f"r{i}" for i in range(60)]


def test_jsonl_rotates_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = JsonlSink(tmp_path, rotate_s=60, clock=clock)
    sink.write(records(1))
    clock.advance(59)
    sink.write(records(1, 1))
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    clock.advance(1)
    sink.write(records(1, 2))
    sink.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert len(list(read_jsonl(tmp_path))) == 3


def test_two_sinks_in_one_directory_never_share_a_file(tmp_path: Path) -> None:
    clock = FakeClock()
    a = JsonlSink(tmp_path, replica="same", clock=clock)
    b = JsonlSink(tmp_path, replica="same", clock=clock)
    a.write(records(1))
    b.write(records(1, 1))
    a.close()
    b.close()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_read_jsonl_skips_a_torn_last_line(tmp_path: Path) -> None:
    (tmp_path / "payloads-x-1.jsonl").write_text('{"request_id": "a"}\n{"request_id": "b', "utf-8")
    assert [r["request_id"] for r in read_jsonl(tmp_path)] == ["a"]


def test_parquet_files_appear_complete_on_rotation_and_close(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    clock = FakeClock()
    sink = ParquetSink(tmp_path, replica="p", rotate_s=10, clock=clock)
    sink.write(records(5))
    sink.write(records(5, 5))
    assert list(tmp_path.glob("*.parquet")) == []  # still being written (a .part file)
    clock.advance(10)
    sink.write(records(2, 10))
    assert len(list(tmp_path.glob("*.parquet"))) == 1
    sink.close()
    files = sorted(tmp_path.glob("*.parquet"))
    assert len(files) == 2 and list(tmp_path.glob("*.part")) == []
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    assert [row["request_id"] for row in rows] == [f"r{i}" for i in range(12)]
    assert rows[3]["inputs"] == '{"x":{"datatype":"FP32","shape":[1],"data":[3.0]}}'
    assert rows[3]["latency_ms"] == 0.5


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({"payload_log": "DIR"}, JsonlSink),
        ({"payload_log": "file://DIR"}, JsonlSink),
        ({"payload_log": "DIR", "payload_log_format": "parquet"}, ParquetSink),
        ({"payload_log": "redis://127.0.0.1:1/0?stream=s&maxlen=10"}, RedisSink),
    ],
)
def test_open_sink_picks_by_destination(
    tmp_path: Path, overrides: dict[str, str], kind: type
) -> None:
    values = {k: v.replace("DIR", str(tmp_path / "logs")) for k, v in overrides.items()}
    sink = open_sink(Settings(registry=str(tmp_path / "reg"), **values), "r")
    assert isinstance(sink, kind)
    if isinstance(sink, RedisSink):
        assert (sink.stream, sink.maxlen) == ("s", 10)
    sink.close()


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("s3://bucket/logs", "neither a directory nor a redis:// URL"),
        ("redis://127.0.0.1:1/0?maxlen=lots", "maxlen"),
    ],
)
def test_open_sink_rejects_bad_destinations(tmp_path: Path, target: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        open_sink(Settings(registry=str(tmp_path), payload_log=target), "r")
