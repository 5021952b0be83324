"""The HTTP server contract (:class:`modelyard.http_server.HttpServer`), the same for uvicorn
and granian, in-process on real sockets: a socket bound by the caller, listening only once the
server starts (how ``--workers N`` share a port); stop refuses new connections, lets in-flight
requests finish, closes idle keep-alive connections and is bounded by ``drain_timeout_s``.

The app holds ``/slow`` until the test releases it, so the order of events is the test's; waits
poll a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from collections.abc import Awaitable, Callable

import pytest

from modelyard.frontends.asgi import Receive, Scope, Send
from modelyard.http_server import HttpServer, create_http_server
from modelyard.server import bind_socket
from modelyard.settings import Settings

pytestmark = pytest.mark.integration

KINDS = ["uvicorn", "granian"]
WAIT_S = 20.0


class GatedApp:
    """``/slow`` answers once ``release`` is set; every other path answers at once."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        if scope["path"] == "/slow":
            self.arrived.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> bytes:
    """GET ``path`` (on ``conn`` if given, kept open; else on a new one); the body of a 200."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        body = reply.read()
    finally:
        if own:
            conn.close()
    assert reply.status == 200, (reply.status, body)
    return body


def refused(port: int) -> bool:
    """Whether a new connection to ``port`` is refused now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # the listener is closing as we connect: ask again
    return False


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = condition()
        if value if isinstance(value, bool) else await value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def server_on(kind: str, app: GatedApp, sock: socket.socket, **settings: object) -> HttpServer:
    return create_http_server(Settings(http_server=kind, **settings), app, sock)


@pytest.mark.parametrize("kind", KINDS)
def test_listens_on_the_callers_socket_only_once_started(kind: str) -> None:
    async def main() -> None:
        # A worker's socket: bound with SO_REUSEPORT, not listening yet.
        sock = bind_socket("127.0.0.1", 0, reuse_port=True, listen=False)
        port = sock.getsockname()[1]
        server = server_on(kind, GatedApp(), sock)
        assert await asyncio.to_thread(refused, port)
        await server.start()
        assert await asyncio.to_thread(get, port, "/fast") == b"/fast"
        await asyncio.wait_for(server.stop(), WAIT_S)
        assert await asyncio.to_thread(refused, port)

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_stop_drains_in_flight_requests_and_closes_idle_connections(kind: str) -> None:
    async def main() -> None:
        app = GatedApp()
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = server_on(kind, app, sock)
        await server.start()
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        assert await asyncio.to_thread(get, port, "/keep-alive", idle) == b"/keep-alive"
        slow = asyncio.ensure_future(asyncio.to_thread(get, port, "/slow"))
        await asyncio.wait_for(app.arrived.wait(), WAIT_S)

        stop = asyncio.ensure_future(server.stop())
        await until(lambda: asyncio.to_thread(refused, port), "new connections to be refused")
        assert not stop.done() and not slow.done()  # the in-flight request holds the stop
        app.release.set()
        assert await asyncio.wait_for(slow, WAIT_S) == b"/slow"
        await asyncio.wait_for(stop, WAIT_S)
        with pytest.raises((http.client.HTTPException, OSError)):
            await asyncio.to_thread(get, port, "/again", idle)  # closed by the server
        idle.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_stop_gives_up_on_requests_after_the_drain_timeout(kind: str) -> None:
    async def main() -> None:
        app = GatedApp()
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = server_on(kind, app, sock, drain_timeout_s=1.0)
        await server.start()
        slow = asyncio.ensure_future(asyncio.to_thread(get, port, "/slow"))
        await asyncio.wait_for(app.arrived.wait(), WAIT_S)
        started = time.monotonic()
        await asyncio.wait_for(server.stop(), WAIT_S)
        assert 0.9 <= time.monotonic() - started < WAIT_S / 2
        app.release.set()  # let the client's thread end, whatever it got
        await asyncio.wait_for(asyncio.gather(slow, return_exceptions=True), WAIT_S)

    asyncio.run(main())
