"""``run_load_test``: a closed-loop load test of any Open Inference Protocol V2 server.

Each of ``concurrency`` connections sends the same V2 JSON request to
``{url}/v2/models/{model}/infer``, waits for the full response and sends the next one, until
``duration_s`` has passed; requests in flight at that moment are awaited and counted. Latency is
measured per request from the write to the last byte of the response. For the peer comparison
with pinned cores, ``bench/run.py`` drives ``wrk`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.bench.httpclient import (
    Connect,
    ProtocolError,
    Response,
    Writer,
    build_request,
    connector,
    encode_payload,
    parse_target,
    read_response,
)
from modelyard.bench.stats import RunStats, summarize
from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError

# Errors that cost a connection: count one error, reconnect, go on.
_TRANSPORT_ERRORS = (
    OSError,
    EOFError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    TimeoutError,
    ProtocolError,
)
_RECONNECT_BACKOFF_S = 0.01
_PROGRESS_EVERY_S = 0.2


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot for progress bars, taken a few times a second."""

    elapsed_s: float
    duration_s: float
    requests: int
    errors: int


@dataclass(frozen=True, slots=True)
class LoadTestResult:
    """What one load test measured. ``stats.errors`` = non-2xx/3xx responses + transport errors."""

    url: str
    model: str
    concurrency: int
    stats: RunStats
    status_counts: Mapping[int, int]
    transport_errors: int
    first_error: str | None

    @property
    def rps(self) -> float:
        return self.stats.rps

    @property
    def successes(self) -> int:
        """Responses with a 2xx or 3xx status."""
        return sum(n for code, n in self.status_counts.items() if 200 <= code < 400)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "model": self.model,
            "concurrency": self.concurrency,
            **self.stats.as_dict(),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "transport_errors": self.transport_errors,
            "successes": self.successes,
            "first_error": self.first_error,
        }


@dataclass(slots=True)
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    bad_responses: int = 0
    first_error: str | None = None

    def response(self, resp: Response, latency_s: float) -> None:
        self.latencies.append(latency_s)
        self.statuses[resp.status] += 1
        if not 200 <= resp.status < 400:
            self.bad_responses += 1
            if self.first_error is None:
                text = resp.body[:300].decode("utf-8", "replace")
                self.first_error = f"HTTP {resp.status}: {text}"

    def transport_error(self, exc: BaseException) -> None:
        self.transport_errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}".rstrip(": ")

    @property
    def errors(self) -> int:
        return self.bad_responses + self.transport_errors


def run_load_test(
    url: str,
    model: str,
    *,
    concurrency: int,
    duration_s: float,
    payload: bytes | str | Mapping[str, Any],
    timeout_s: float = 30.0,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    connect: Connect | None = None,
) -> LoadTestResult:
    """Load-test ``model`` on the V2 server at ``url`` and return what was measured.

    ``payload`` is the V2 request body (bytes, text or a mapping). ``on_progress`` is called a
    few times a second and once at the end. ``connect`` replaces the TCP connection (tests).
    Must not be called from a running event loop; use :func:`load_test` there.
    """
    return asyncio.run(
        load_test(
            url,
            model,
            concurrency=concurrency,
            duration_s=duration_s,
            payload=payload,
            timeout_s=timeout_s,
            on_progress=on_progress,
            clock=clock,
            connect=connect,
        )
    )


def _check_args(concurrency: int, duration_s: float, timeout_s: float) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if concurrency > 10_000:
        raise InvalidInputError(f"concurrency must be <= 10000, got {concurrency}")
    if not 0 < duration_s <= 24 * 3600:
        raise InvalidInputError(f"duration_s must be > 0 and <= 86400, got {duration_s!r}")
    if not 0 < timeout_s:
        raise InvalidInputError(f"timeout_s must be > 0, got {timeout_s!r}")


async def load_test(
    url: str,
    model: str,
    *,
    concurrency: int,
    duration_s: float,
    payload: bytes | str | Mapping[str, Any],
    timeout_s: float = 30.0,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    connect: Connect | None = None,
) -> LoadTestResult:
    """The coroutine behind :func:`run_load_test` (same arguments)."""
    _check_args(concurrency, duration_s, timeout_s)
    target = parse_target(url, model)
    request = build_request(target, encode_payload(payload))
    tally = _Tally()
    start = clock.monotonic()
    stop_at = start + duration_s
    open_conn = connect if connect is not None else connector(target)

    def snapshot() -> Progress:
        elapsed = min(clock.monotonic() - start, duration_s)
        return Progress(elapsed, duration_s, len(tally.latencies), tally.errors)

    async def report() -> None:
        assert on_progress is not None
        while True:
            await asyncio.sleep(_PROGRESS_EVERY_S)
            on_progress(snapshot())

    reporter = asyncio.create_task(report()) if on_progress is not None else None
    try:
        await asyncio.gather(
            *(
                _connection_loop(open_conn, request, stop_at, timeout_s, clock, tally)
                for _ in range(concurrency)
            )
        )
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    elapsed = clock.monotonic() - start
    if on_progress is not None:
        on_progress(snapshot())
    return LoadTestResult(
        url=url,
        model=model,
        concurrency=concurrency,
        stats=summarize(tally.latencies, errors=tally.errors, duration_s=elapsed),
        status_counts=dict(tally.statuses),
        transport_errors=tally.transport_errors,
        first_error=tally.first_error,
    )


async def _connection_loop(
    open_conn: Connect,
    request: bytes,
    stop_at: float,
    timeout_s: float,
    clock: Clock,
    tally: _Tally,
) -> None:
    """One connection: request, full response, repeat until ``stop_at``; reconnect on errors."""
    conn: tuple[asyncio.StreamReader, Writer] | None = None
    try:
        while clock.monotonic() < stop_at:
            try:
                if conn is None:
                    async with asyncio.timeout(timeout_s):
                        conn = await open_conn()
                reader, writer = conn
                started = clock.monotonic()
                async with asyncio.timeout(timeout_s):
                    writer.write(request)
                    await writer.drain()
                    resp = await read_response(reader)
                tally.response(resp, clock.monotonic() - started)
                if not resp.keep_alive:
                    writer.close()
                    conn = None
            except _TRANSPORT_ERRORS as exc:
                tally.transport_error(exc)
                if conn is not None:
                    conn[1].close()
                    conn = None
                # A refused or reset connection fails at once: do not spin on it.
                await asyncio.sleep(_RECONNECT_BACKOFF_S)
    finally:
        if conn is not None:
            conn[1].close()
