"""Structured log lines, per-component levels, uvicorn routing and sampled access logs."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelyard.core.observer import InferEvent
from modelyard.errors import InvalidInputError
from modelyard.monitoring import tracing
from modelyard.monitoring.logs import (
    ACCESS_LOGGER,
    AccessLogObserver,
    BatchingHandler,
    JsonFormatter,
    TextFormatter,
    announce,
    configure_logging,
    flush_logs,
)
from modelyard.settings import Settings
from modelyard.types import InferRequest, RequestContext


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    names = ["uvicorn", "uvicorn.error", "uvicorn.asgi", ACCESS_LOGGER, "modelyard.batcher"]
    saved = [
        (lg, lg.level, list(lg.handlers), lg.propagate) for lg in map(logging.getLogger, names)
    ]
    root_state = (root.level, list(root.handlers))
    yield
    root.setLevel(root_state[0])
    root.handlers[:] = root_state[1]
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def record(message: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("modelyard.test", logging.WARNING, __file__, 1, message, args, None)
    rec.created = 1_700_000_000.25
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def configured(**overrides: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(Settings.model_construct(**overrides), stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    flush_logs()  # access lines are written in batches
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_timestamp_level_logger_message_and_fields() -> None:
    doc = json.loads(JsonFormatter().format(record("hello %s", "x", fields={"model": "m"})))
    assert doc == {
        "ts": "2023-11-14T22:13:20.250Z",
        "level": "warning",
        "logger": "modelyard.test",
        "message": "hello x",
        "model": "m",
    }


def test_json_line_bytes_keep_the_base_keys_first_and_let_fields_override() -> None:
    line = JsonFormatter().line(1_700_000_000.5, "INFO", "x", "m", {"message": "y", "n": 1.5})
    assert line == (
        '{"ts":"2023-11-14T22:13:20.500Z","level":"info","logger":"x","message":"y","n":1.5}'
    )


def test_timestamps_truncate_to_milliseconds_in_any_order_of_seconds() -> None:
    def expected(created: float) -> str:  # the definition: UTC second, then truncated millis
        second = int(created)
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{prefix}.{int((created - second) * 1000):03d}Z"

    base = 1_700_000_000.0
    times = [base, base + 0.0005, base + 0.999, base + 0.9999999, base + 1.25, base + 0.5]
    times += [base + k * 0.0371 for k in range(100)] + [0.0, 0.001, 12.5, -0.5, -1.25]
    formatter = JsonFormatter()
    for created in times:
        ts = json.loads(formatter.line(created, "INFO", "x", "m", {}))["ts"]
        assert ts == expected(created), created
    assert expected(base + 0.999) == "2023-11-14T22:13:20.999Z"


def test_json_lines_carry_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        rec.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in doc["exc"]


def test_text_lines_append_fields() -> None:
    line = TextFormatter().format(record("hi", fields={"code": "OK", "latency_ms": 1.5}))
    assert line == "2023-11-14T22:13:20.250Z WARNING modelyard.test: hi code=OK latency_ms=1.5"


def test_configure_logging_sets_root_and_per_component_levels() -> None:
    stream = configured(log_level="warning", log_levels={"modelyard.batcher": "debug"})
    logging.getLogger("modelyard.batcher").debug("batch detail")
    logging.getLogger("modelyard.other").info("not shown")
    logging.getLogger("modelyard.other").error("shown")
    assert [(d["logger"], d["message"]) for d in lines(stream)] == [
        ("modelyard.batcher", "batch detail"),
        ("modelyard.other", "shown"),
    ]


def test_uvicorn_logs_go_through_the_same_handler() -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.NullHandler())  # as uvicorn would
    stream = configured(log_level="info")
    logging.getLogger("uvicorn.error").info("Started server process")  # chatter: hidden
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    assert [d["message"] for d in lines(stream)] == ["Invalid HTTP request received."]
    assert logging.getLogger("uvicorn.error").handlers == []


def test_configuring_twice_replaces_the_handler() -> None:
    configured()
    stream = configured(log_format="text")
    logging.getLogger("modelyard.x").warning("once")
    assert stream.getvalue().count("once") == 1
    assert " WARNING modelyard.x: once" in stream.getvalue()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"log_level": "loud"}, "log_level"), ({"log_levels": {"a.b": "x"}}, "log_levels['a.b']")],
)
def test_a_bad_level_names_the_setting(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError, match=field.replace("[", r"\[")):
        configured(**overrides)


# ---- access logs --------------------------------------------------------------------------------
def infer_event(code: str = "OK") -> InferEvent:
    ctx = RequestContext(request_id="r1")
    return InferEvent(
        "checkout", "fraud", "3", "canary", code, 0.0123456, InferRequest({}), None, ctx
    )


def access_stream() -> io.StringIO:
    return configured(log_level="error")  # access lines do not depend on the root level


def test_access_lines_carry_the_request_fields() -> None:
    stream = access_stream()
    AccessLogObserver(1.0).on_infer(infer_event("DEADLINE_EXCEEDED"))
    (doc,) = lines(stream)
    assert doc["logger"] == ACCESS_LOGGER and doc["level"] == "info"
    fields = {k: doc[k] for k in ("request_id", "endpoint", "model", "version", "route")}
    assert fields == {
        "request_id": "r1",
        "endpoint": "checkout",
        "model": "fraud",
        "version": "3",
        "route": "canary",
    }
    assert doc["latency_ms"] == 12.346 and doc["code"] == "DEADLINE_EXCEEDED"
    assert "trace_id" not in doc


def test_access_log_sampling_keeps_the_configured_fraction() -> None:
    stream = access_stream()
    draws = iter([0.1, 0.3, 0.24, 0.9, 0.25, 0.0, 0.5, 0.7])
    observer = AccessLogObserver(0.25, rand=lambda: next(draws))
    for _ in range(8):
        observer.on_infer(infer_event())
    assert len(lines(stream)) == 3  # the draws below 0.25


def test_the_fast_path_writes_the_same_line_as_the_logging_path() -> None:
    stream = access_stream()
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, BatchingHandler)]
    AccessLogObserver(1.0).on_infer(infer_event())  # pytest's handlers too: the logging path
    for handler in others:  # now ours is the only handler: lines skip the LogRecord
        root.removeHandler(handler)
    try:
        AccessLogObserver(1.0).on_infer(infer_event())
    finally:
        for handler in others:
            root.addHandler(handler)
    slow, fast = lines(stream)
    assert slow.pop("ts") and fast.pop("ts")
    assert slow == fast


def test_no_access_lines_at_sample_zero_or_when_the_logger_is_off() -> None:
    stream = access_stream()
    AccessLogObserver(0.0, rand=lambda: pytest.fail("no draw needed")).on_infer(infer_event())
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    AccessLogObserver(1.0).on_infer(infer_event())
    assert stream.getvalue() == ""


def test_access_lines_name_the_trace_while_tracing() -> None:
    stream = access_stream()
    stop = tracing.configure_tracing(exporter=InMemorySpanExporter())
    try:
        with tracing.start_span(tracing.SPAN_HTTP):
            trace_id = tracing.current_trace_id()
            AccessLogObserver(1.0).on_infer(infer_event())
    finally:
        stop()
    (doc,) = lines(stream)
    assert trace_id is not None and doc["trace_id"] == trace_id


def test_sample_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="access_log_sample"):
        AccessLogObserver(1.5)


# ---- batched writes ----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def access_record(n: int) -> logging.LogRecord:
    return logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, f"a{n}", None, None)


def test_access_lines_wait_for_the_delay_the_size_or_a_flush() -> None:
    stream, clock = io.StringIO(), Clock()
    handler = BatchingHandler(stream, max_delay_s=0.2, max_bytes=1000, clock=clock)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(access_record(1))
    clock.now += 0.125
    handler.handle(access_record(2))
    assert stream.getvalue() == ""
    clock.now += 0.125  # the oldest line has now waited longer than max_delay_s
    handler.handle(access_record(3))
    assert stream.getvalue() == "a1\na2\na3\n"
    handler.handle(access_record(4))
    handler.flush()
    assert stream.getvalue().endswith("a3\na4\n")
    for n in range(400):  # ~2000 bytes: written at max_bytes without waiting
        handler.handle(access_record(n))
    assert len(stream.getvalue()) > 1000


def test_other_records_are_written_at_once_after_pending_access_lines() -> None:
    stream = io.StringIO()
    handler = BatchingHandler(stream, clock=Clock())
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(access_record(1))
    handler.handle(logging.LogRecord("modelyard.x", logging.INFO, __file__, 0, "x", None, None))
    assert stream.getvalue() == "a1\nx\n"


@pytest.mark.parametrize("log_level", ["info", "error"])
def test_announcements_are_written_in_the_log_format_at_any_level(log_level: str) -> None:
    stream = configured(log_format="json", log_level=log_level)
    announce("modelyard ready pid=1 rss_mib=2.0")
    (doc,) = lines(stream)
    assert (doc["level"], doc["logger"], doc["message"]) == (
        "info",
        "modelyard.server",
        "modelyard ready pid=1 rss_mib=2.0",
    )


def test_announcements_before_logging_is_configured_are_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger().handlers[:] = [
        h for h in logging.getLogger().handlers if not isinstance(h, BatchingHandler)
    ]
    announce("modelyard listening http=1 grpc=2 pid=3")
    assert capsys.readouterr().err == "modelyard listening http=1 grpc=2 pid=3\n"
