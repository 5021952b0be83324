""":class:`modelyard.http_listener.BatchListener` on real loopback sockets, on uvloop and on the
stdlib loop: a burst of waiting connections is taken in one go (uvloop's own listener takes one
per loop iteration), running out of descriptors pauses accepting instead of spinning, and a
closed listener accepts nothing more. Loop iterations are counted, not timed."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

from modelyard import http_listener
from modelyard.http_listener import BatchListener
from modelyard.server import bind_socket

pytestmark = pytest.mark.integration

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}
BURST = 64


class Counting(asyncio.Protocol):
    made: list[asyncio.BaseTransport]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Any) -> None:
    loop = loop_factory()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


async def iterations_until(condition: Callable[[], bool], limit: int = 10 * BURST) -> int:
    """How many loop iterations pass before ``condition`` holds."""
    for n in range(limit):
        if condition():
            return n
        await asyncio.sleep(0)  # one pass of the loop: I/O polled, ready callbacks run
    raise AssertionError(f"not after {limit} loop iterations")


def listening(
    made: list[asyncio.BaseTransport], backlog: int
) -> tuple[socket.socket, BatchListener]:
    """A fresh socket and a listener on the running loop whose connections land in ``made``."""
    sock = bind_socket("127.0.0.1", 0, listen=False)
    protocol = type("P", (Counting,), {"made": made})
    return sock, BatchListener(asyncio.get_running_loop(), protocol, sock, backlog=backlog)


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for c in opened:
        c.close()


def connect(port: int, n: int, into: list[socket.socket]) -> None:
    """``n`` connections, each complete (in the listener's backlog) when this returns."""
    for _ in range(n):
        into.append(socket.create_connection(("127.0.0.1", port), timeout=10))


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_a_burst_of_waiting_connections_is_taken_at_once(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], clients: list[socket.socket]
) -> None:
    made: list[asyncio.BaseTransport] = []

    async def main() -> None:
        sock, listener = listening(made, backlog=2 * BURST)
        connect(sock.getsockname()[1], BURST, clients)  # the loop is not running meanwhile
        # One iteration accepts them all; setting up each transport takes a few more.
        # uvloop's own listener needs one iteration per connection (BURST or more).
        assert await iterations_until(lambda: len(made) == BURST) <= 6
        listener.close()
        await listener.wait_closed()
        sock.close()
        for t in made:
            t.close()

    run(loop_factory, main)


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_a_closed_listener_leaves_connections_in_the_backlog(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], clients: list[socket.socket]
) -> None:
    made: list[asyncio.BaseTransport] = []

    async def main() -> None:
        sock, listener = listening(made, backlog=8)
        listener.close()
        listener.close()  # twice is harmless, as asyncio.Server's
        connect(sock.getsockname()[1], 3, clients)
        for _ in range(20):
            await asyncio.sleep(0)
        assert made == []
        sock.setblocking(True)
        sock.settimeout(5)
        conn, _ = sock.accept()  # still there for whoever accepts next
        conn.close()
        sock.close()

    run(loop_factory, main)


class OutOfDescriptors(socket.socket):
    """A listening socket whose accept fails with EMFILE while ``full``."""

    full = True
    calls = 0

    def accept(self) -> tuple[socket.socket, Any]:
        type(self).calls += 1
        if type(self).full:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_out_of_descriptors_pauses_accepting_then_resumes(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    clients: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[asyncio.BaseTransport] = []
    retries: list[tuple[float, Callable[[], None]]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The retry is taken from the loop and run by the test: no waiting on a timer.
        monkeypatch.setattr(loop, "call_later", lambda d, cb: retries.append((d, cb)))
        sock = OutOfDescriptors(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        protocol = type("P", (Counting,), {"made": made})
        listener = BatchListener(loop, protocol, sock, backlog=8)
        connect(sock.getsockname()[1], 2, clients)
        for _ in range(20):
            await asyncio.sleep(0)
        # One failed accept, then no more tries until the retry: the loop does not spin.
        assert (OutOfDescriptors.calls, made) == (1, [])
        assert [d for d, _ in retries] == [http_listener.RETRY_AFTER_EMFILE_S]
        OutOfDescriptors.full = False
        retries[0][1]()
        assert await iterations_until(lambda: len(made) == 2) <= 6
        listener.close()
        sock.close()
        for t in made:
            t.close()

    run(loop_factory, main)
    OutOfDescriptors.full, OutOfDescriptors.calls = True, 0
