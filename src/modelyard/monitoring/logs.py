"""Structured logs: one JSON object per line (or plain text), access logs, per-component levels.

Every line has ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``message``;
failures add ``exc``. Access-log lines (logger ``modelyard.access``, message ``infer``) add
``request_id``, ``endpoint``, ``model``, ``version``, ``route``, ``latency_ms``, ``code`` and,
while tracing is on, ``trace_id``. Pass the same fields to any logger with
``extra={"fields": {...}}``.

:func:`configure_logging` is the one place the process's logging is set up (the server calls
it first thing); uvicorn's loggers are routed through the same handler.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import orjson

from modelyard.core.clock import SYSTEM_CLOCK
from modelyard.core.observer import InferEvent, Observer
from modelyard.errors import InvalidInputError
from modelyard.monitoring import tracing
from modelyard.settings import Settings

ACCESS_LOGGER = "modelyard.access"
ACCESS_MESSAGE = "infer"
#: Longest time an access line waits in the buffer before it is written.
ACCESS_FLUSH_S = 0.2
FIELDS_ATTR = "fields"
#: Loggers of libraries we run whose INFO chatter is noise; settings.log_levels may lower them.
QUIET_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
_LEVELS = {"trace": 5, "debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40}
_LEVELS |= {"critical": 50}


def parse_level(value: str, field: str) -> int:
    """A level name (any case) as a ``logging`` level; InvalidInputError naming ``field``."""
    level = _LEVELS.get(str(value).lower())
    if level is None:
        raise InvalidInputError(f"{field} must be one of {', '.join(_LEVELS)}, got {value!r}")
    return level


#: ``".000Z"`` ... ``".999Z"``: the millisecond tails of timestamps, formatted once (a format
#: spec per line costs more than the rest of the timestamp).
_MILLIS = tuple(f".{ms:03d}Z" for ms in range(1000))


class _Timestamps:
    """ISO 8601 UTC timestamps; the formatted second is reused within that second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        ms = int((created - second) * 1000)
        if 0 <= ms < 1000:
            return self._prefix + _MILLIS[ms]
        return f"{self._prefix}.{ms:03d}Z"  # negative before 1970 (int() truncates towards 0)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the keys)."""

    def __init__(self) -> None:
        super().__init__()
        self._ts = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, FIELDS_ATTR, None) or {})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)

    def line(
        self, created: float, level: str, name: str, message: str, fields: Mapping[str, Any]
    ) -> str:
        """The line of a record with these attributes (and no exception)."""
        doc: dict[str, Any] = {
            "ts": self._ts(created),
            "level": level.lower(),
            "logger": name,
            "message": message,
            **fields,
        }
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <message> key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(ts)s %(levelname)s %(name)s: %(message)s")
        self._ts = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        record.ts = self._ts(record.created)
        return _with_fields(super().format(record), getattr(record, FIELDS_ATTR, None))

    def line(
        self, created: float, level: str, name: str, message: str, fields: Mapping[str, Any]
    ) -> str:
        """The line of a record with these attributes (and no exception)."""
        return _with_fields(f"{self._ts(created)} {level} {name}: {message}", fields)


def _with_fields(line: str, fields: Mapping[str, Any] | None) -> str:
    if not fields:
        return line
    return line + " " + " ".join(f"{k}={v}" for k, v in fields.items())


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (a second call replaces it).

    Access lines are buffered and written in batches (after ``max_delay_s``, at ``max_bytes``,
    or on :meth:`flush`): one write per batch instead of one per request, which on a busy server
    also spares the event loop a GIL hand-off per line. Every other record is written at once,
    after the pending access lines, so order is kept."""

    def __init__(
        self,
        stream: TextIO,
        *,
        max_delay_s: float = ACCESS_FLUSH_S,
        max_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream)
        self._max_delay = max_delay_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._oldest = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if not self._pending:
                self._oldest = self._clock()
            self._pending.append(line)
            self._pending_bytes += len(line)
            if (
                record.name != ACCESS_LOGGER
                or self._pending_bytes >= self._max_bytes
                or self._clock() - self._oldest >= self._max_delay
            ):
                self._write()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_access_line(self, line: str) -> None:
        """Buffer an access line formatted by the caller (the access log's fast path)."""
        self.acquire()
        try:
            if not self._pending:
                self._oldest = self._clock()
            self._pending.append(line + self.terminator)
            self._pending_bytes += len(line) + 1
            if (
                self._pending_bytes >= self._max_bytes
                or self._clock() - self._oldest >= self._max_delay
            ):
                self._write()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": line}))
        finally:
            self.release()

    def _write(self) -> None:
        """Lock held: write the pending lines in one go."""
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if text:
            self.stream.write(text)
            self.stream.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()


def flush_logs() -> None:
    """Write out buffered access lines now (the server calls it periodically and at exit)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BatchingHandler):
            handler.flush()


def announce(message: str, logger: str = "modelyard.server") -> None:
    """Write ``message`` as an info record of ``logger`` whatever the log level: the lines that
    scripts and supervisors wait for ("modelyard listening http=...", "modelyard ready ..."),
    in the configured format, so a JSON log stays JSON. Printed as is before
    :func:`configure_logging` ran (e.g. a server started in-process by a test)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, BatchingHandler)]
    if not handlers:
        print(message, file=sys.stderr, flush=True)
        return
    record = logging.LogRecord(logger, logging.INFO, __file__, 0, message, None, None)
    handlers[0].handle(record)  # the handler's level only: the logger's would drop it
    handlers[0].flush()


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record (ours, uvicorn's, libraries') as one line to ``stream`` (stderr)
    in ``settings.log_format``, at ``settings.log_level``, with ``settings.log_levels`` per
    logger name on top. Returns the installed handler."""
    root_level = parse_level(settings.log_level, "log_level")
    levels = {
        name: parse_level(value, f"log_levels[{name!r}]")
        for name, value in settings.log_levels.items()
    }
    handler = BatchingHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    # Our formats print no thread, process or task names: spare every record collecting them.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12+
        logging.logAsyncioTasks = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, BatchingHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()  # uvicorn's own formatters would bypass ours
        logger.propagate = True
        logger.setLevel(max(logging.WARNING, root_level))
    # Access lines are governed by access_log_sample, not by the root level.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    return handler


class AccessLogObserver(Observer):
    """Writes one access-log line per sampled finished request (``sample`` in [0, 1])."""

    def __init__(
        self,
        sample: float,
        *,
        logger: logging.Logger | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise InvalidInputError(f"access_log_sample must be in [0, 1], got {sample!r}")
        self._sample = sample
        self._logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)
        self._rand = rand

    def on_infer(self, event: InferEvent) -> None:
        if self._sample < 1.0 and (self._sample <= 0.0 or self._rand() >= self._sample):
            return
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "request_id": event.ctx.request_id,
            "endpoint": event.endpoint,
            "model": event.model,
            "version": event.version,
            "route": event.route,
            "latency_ms": round(event.latency_s * 1000.0, 3),
            "code": event.code,
        }
        trace_id = tracing.current_trace_id()
        if trace_id is not None:
            fields["trace_id"] = trace_id
        direct = _direct_handler(logger)
        if direct is not None:
            handler, formatter = direct
            line = formatter.line(SYSTEM_CLOCK.wall(), "INFO", logger.name, ACCESS_MESSAGE, fields)
            handler.write_access_line(line)
            return
        # A record built here skips logger.info's caller lookup (a stack walk per request).
        record = logging.LogRecord(
            logger.name, logging.INFO, __file__, 0, ACCESS_MESSAGE, None, None
        )
        record.fields = fields
        logger.handle(record)


def _direct_handler(
    logger: logging.Logger,
) -> tuple[BatchingHandler, JsonFormatter | TextFormatter] | None:
    """configure_logging's handler when it is the only place ``logger``'s records would go
    (no other handler or filter on the way), so that a line can skip the LogRecord machinery
    and produce the same output."""
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or logging.root.filters:
        return None
    handler = handlers[0]
    if not isinstance(handler, BatchingHandler) or handler.filters or handler.level > logging.INFO:
        return None
    formatter = handler.formatter
    if not isinstance(formatter, JsonFormatter | TextFormatter):
        return None
    return handler, formatter
