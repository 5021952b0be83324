"""The HTTP server that runs the REST app on the serving process's event loop.

``settings.http_server`` picks uvicorn (the default) or granian (:mod:`modelyard.http_granian`).
:mod:`modelyard.server` drives either through :class:`HttpServer`, on the loop that also runs
grpc.aio and the background tasks. The caller binds the socket (``server.bind_socket``) and hands
it over, so ``--workers N`` share one ``SO_REUSEPORT`` port with either server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
from collections.abc import Generator
from typing import Protocol

import uvicorn

from modelyard.errors import install_hint
from modelyard.frontends.asgi import ASGIApp
from modelyard.http_listener import BatchListener
from modelyard.settings import Settings


class HttpServer(Protocol):
    """One HTTP server on one socket, started and stopped on the running event loop."""

    async def start(self) -> None:
        """Return once the socket accepts connections; raise if the server failed to start."""

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (at most ``drain_timeout_s``, then
        cut them off) and close idle keep-alive connections."""


def check_http_server(settings: Settings) -> None:
    """Refuse an HTTP server that is not installed, before any socket is bound or worker
    started (a worker failing at start would only be restarted)."""
    if settings.http_server == "granian" and importlib.util.find_spec("granian") is None:
        raise install_hint("granian", "granian")


def create_http_server(settings: Settings, app: ASGIApp, sock: socket.socket) -> HttpServer:
    """The server ``settings.http_server`` names, serving ``app`` on ``sock`` (it takes the
    socket over: it is closed when the server stops)."""
    check_http_server(settings)
    if settings.http_server == "granian":
        from modelyard.http_granian import GranianHttpServer

        return GranianHttpServer(app, sock, settings)
    return UvicornHttpServer(app, sock, settings)


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling (:mod:`modelyard.server` coordinates shutdown),
    accepting connections through :class:`~modelyard.http_listener.BatchListener`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup for given sockets and no lifespan, with the listener swapped."""
        assert sockets is not None and self.config.lifespan == "off"
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        loop = asyncio.get_running_loop()
        listeners = [BatchListener(loop, create_protocol, s, config.backlog) for s in sockets]
        self.servers = listeners  # type: ignore[assignment]  # close() and wait_closed()
        self.started = True


class UvicornHttpServer:
    """uvicorn (httptools, uvloop) serving on the given socket."""

    def __init__(self, app: ASGIApp, sock: socket.socket, settings: Settings) -> None:
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # uvicorn's loggers go through configure_logging's handler
            log_level=None,
            access_log=False,
            timeout_graceful_shutdown=int(max(settings.drain_timeout_s, 1)),
            limit_concurrency=None,
            http="httptools",
            loop="uvloop",
        )
        self._server = _UvicornServer(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        task = self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        # "listening" must mean it: uvicorn starts serving on the socket a few steps later.
        while not self._server.started and not task.done():
            await asyncio.sleep(0.005)
        if task.done():
            task.result()  # startup failed: raise its error

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
