"""run_load_test end to end over an in-process fake connection and a fake clock: every request
advances the clock by ``step`` (a power of two, so sums stay exact) and yields to the other
connections once, so counts and latencies are exact."""

from __future__ import annotations

import asyncio
import math

import pytest

from modelyard.bench.httpclient import Writer
from modelyard.bench.loadtest import Progress, run_load_test
from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError

BODY = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
STEP = 2.0**-10  # seconds of fake time per request


def response(status: int, body: bytes = b"{}", close: bool = False) -> bytes:
    conn = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s" % (status, conn, len(body), body)


class FakeServer:
    """Answers every request at once with ``answer``; each request costs ``step`` fake seconds."""

    def __init__(self, clock: FakeClock, answer: bytes, step: float = STEP) -> None:
        self.clock = clock
        self.answer = answer
        self.step = step
        self.connects = 0
        self.requests: list[bytes] = []
        self.closed = 0

    async def connect(self) -> tuple[asyncio.StreamReader, Writer]:
        self.connects += 1
        reader = asyncio.StreamReader()
        return reader, _FakeWriter(self, reader)


class _FakeWriter:
    def __init__(self, server: FakeServer, reader: asyncio.StreamReader) -> None:
        self.server = server
        self.reader = reader

    def write(self, data: bytes) -> None:
        self.server.requests.append(data)
        self.server.clock.advance(self.server.step)
        self.reader.feed_data(self.server.answer)

    async def drain(self) -> None:
        await asyncio.sleep(0)  # let the other connections send, as a real socket would

    def close(self) -> None:
        self.server.closed += 1


def test_counts_and_latencies_are_exact() -> None:
    clock = FakeClock(start=0.0)
    server = FakeServer(clock, response(200, b'{"outputs":[]}'))
    seen: list[Progress] = []
    result = run_load_test(
        "http://h:1",
        "m",
        concurrency=4,
        duration_s=0.5,
        payload=BODY,
        clock=clock,
        connect=server.connect,
        on_progress=seen.append,
    )
    assert result.stats.requests == len(server.requests) == 0.5 / STEP
    assert result.stats.errors == 0
    assert result.successes == result.stats.requests
    assert result.status_counts == {200: result.stats.requests}
    # Four connections in turn: each request waits for its own step and the three others'.
    assert result.stats.p50_s == result.stats.max_s == 4 * STEP
    assert result.stats.duration_s == 0.5
    assert result.rps == 1 / STEP
    assert server.requests[0].startswith(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: h:1\r\n")
    assert server.requests[0].endswith(b'"data":[1,2]}]}')
    assert server.connects == 4 and server.closed == 4  # one keep-alive connection each
    assert seen[-1].requests == result.stats.requests
    assert seen[-1].elapsed_s == 0.5
    assert result.as_dict()["status_counts"] == {"200": result.stats.requests}


def test_error_statuses_count_as_errors_with_the_first_message() -> None:
    clock = FakeClock(start=0.0)
    server = FakeServer(clock, response(503, b'{"error":"overloaded"}'), step=2**-6)
    result = run_load_test(
        "http://h:1",
        "m",
        concurrency=1,
        duration_s=0.25,
        payload=BODY,
        clock=clock,
        connect=server.connect,
    )
    assert result.stats.errors == result.stats.requests == 16
    assert result.successes == 0
    assert result.first_error == 'HTTP 503: {"error":"overloaded"}'


def test_connection_close_reconnects() -> None:
    clock = FakeClock(start=0.0)
    server = FakeServer(clock, response(200, close=True), step=2**-6)
    result = run_load_test(
        "http://h:1",
        "m",
        concurrency=1,
        duration_s=5 * 2**-6,
        payload=BODY,
        clock=clock,
        connect=server.connect,
    )
    assert result.stats.requests == 5
    assert server.connects == 5


def test_refused_connections_are_transport_errors() -> None:
    clock = FakeClock(start=0.0)

    async def refuse() -> tuple[asyncio.StreamReader, Writer]:
        clock.advance(0.25)
        raise ConnectionRefusedError(111, "Connection refused")

    result = run_load_test(
        "http://h:1", "m", concurrency=2, duration_s=1.0, payload=BODY, clock=clock, connect=refuse
    )
    assert result.stats.requests == 0
    assert result.transport_errors == result.stats.errors == 4
    assert math.isnan(result.stats.p50_s)
    assert result.first_error is not None
    assert result.first_error.startswith("ConnectionRefusedError")


def test_garbage_answer_is_a_transport_error_and_drops_the_connection() -> None:
    clock = FakeClock(start=0.0)
    server = FakeServer(clock, b"SSH-2.0-OpenSSH\r\n\r\n", step=0.5)
    result = run_load_test(
        "http://h:1",
        "m",
        concurrency=1,
        duration_s=1.0,
        payload=BODY,
        clock=clock,
        connect=server.connect,
    )
    assert result.transport_errors == 2
    assert server.connects == 2 and server.closed == 2
    assert result.first_error is not None and "ProtocolError" in result.first_error


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 10_001}, "concurrency"),
        ({"duration_s": 0}, "duration_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"payload": "not json"}, "payload"),
        ({"url": "localhost:8080"}, "url"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "url": "http://h:1",
        "concurrency": 1,
        "duration_s": 1.0,
        "payload": BODY,
        "timeout_s": 1.0,
    }
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        run_load_test(model="m", connect=None, **args)  # type: ignore[arg-type]
