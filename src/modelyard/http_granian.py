"""granian as the HTTP server, embedded on the serving process's asyncio loop.

granian's embedded server (``granian.server.embed.Server``) runs its Rust HTTP/1.1 stack on a
thread of its own and schedules each request's ASGI coroutine on the *running* loop: the loop of
grpc.aio, the background tasks and the life cycle in :mod:`modelyard.server`, exactly as uvicorn
does. Under granian's own CLI, ModelYard's app kept the p99 at saturation a tenth of uvicorn's
(BENCHMARKS.md); this embedded mode is compared by ``bench/granian_vs_uvicorn.sh``.

Two things it needs beyond granian's documented arguments:

* **The caller's socket.** ``embed.Server`` binds its own socket from host and port; here
  ``_init_shared_socket`` hands it a duplicate of the socket ``server.bind_socket`` bound, so
  ``--workers N`` keep sharing the supervisor's ``SO_REUSEPORT`` port and a worker listens only
  once ready (granian calls ``listen()`` on a socket that does not listen yet). granian closes
  its duplicate when it stops; :meth:`GranianHttpServer.start` closes ours, so stopping closes
  the listening socket and the kernel sends no more connections to a draining process.
* **Logging through ours.** granian configures logging when constructed; an *incremental*
  config only sets its logger's level and lets records propagate to the handler
  :func:`modelyard.monitoring.logs.configure_logging` installed. Its logger ``_granian`` gets
  ``max(warning, log_level)`` unless ``log_levels`` names it.

Stopping: granian stops accepting, lets every in-flight request finish (hyper's graceful
shutdown: the response carries ``Connection: close``), closes idle keep-alive connections and
only then ends its serve task, which :meth:`GranianHttpServer.stop` awaits for at most
``drain_timeout_s``; requests still running then are cut off when the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces
from granian.server.embed import Server

from modelyard.errors import UnavailableError
from modelyard.frontends.asgi import ASGIApp
from modelyard.monitoring.logs import parse_level
from modelyard.settings import Settings

LOGGER = "_granian"  # granian's own name, also used by its Rust side
#: granian logs this at every embedded start; deploy/README.md says it once instead.
_EXPERIMENTAL_NOTICE = "Embedded server is experimental!"

log = logging.getLogger("modelyard.server")


def granian_log_level(settings: Settings) -> int:
    """Level of granian's logger: ``log_levels['_granian']`` if set, else warning or quieter
    (like uvicorn's loggers)."""
    named = settings.log_levels.get(LOGGER)
    if named is not None:
        return parse_level(named, f"log_levels[{LOGGER!r}]")
    return max(logging.WARNING, parse_level(settings.log_level, "log_level"))


def _log_config() -> dict[str, Any]:
    # Incremental: no handler of ours is closed or replaced; granian's records propagate.
    return {"incremental": True, "handlers": {}, "loggers": {LOGGER: {"propagate": True}}}


class _DropExperimentalNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _EXPERIMENTAL_NOTICE


class _EmbeddedGranian(Server):
    """granian's embedded server on a socket bound by the caller."""

    def __init__(self, app: ASGIApp, sock: socket.socket, backlog: int) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            app,
            address=host,
            port=port,
            interface=Interfaces.ASGINL,  # no lifespan: modelyard.server runs the life cycle
            http=HTTPModes.http1,
            websockets=False,
            runtime_threads=1,
            backlog=backlog,
            log_dictconfig=_log_config(),
        )
        self._fd = sock.fileno()

    def _init_shared_socket(self) -> None:
        # Instead of binding host:port: a duplicate of the caller's socket, which granian
        # listens on (if not yet) and closes when its worker stops.
        holder = SocketHolder(os.dup(self._fd), False, self.backlog)  # type: ignore[call-arg]
        self._ssp, self._shd = None, holder  # type: ignore[assignment]


class GranianHttpServer:
    """granian serving ``app`` on ``sock`` (taken over: closed once granian listens on it)."""

    def __init__(
        self, app: ASGIApp, sock: socket.socket, settings: Settings, *, backlog: int = 2048
    ) -> None:
        self._sock = sock
        self._drain_timeout_s = max(settings.drain_timeout_s, 1.0)  # as uvicorn's
        self._server = _EmbeddedGranian(app, sock, backlog)
        granian_logger = logging.getLogger(LOGGER)
        granian_logger.setLevel(granian_log_level(settings))
        if not any(isinstance(f, _DropExperimentalNotice) for f in granian_logger.filters):
            granian_logger.addFilter(_DropExperimentalNotice())
        self._task: asyncio.Task[None] | None = None

    def _listening(self) -> bool:
        workers = self._server.wrks
        return (
            bool(workers)
            and all(w.is_alive() for w in workers)  # type: ignore[no-untyped-call]
            and self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        )

    async def start(self) -> None:
        task = self._task = asyncio.create_task(self._server.serve())
        # The worker task's first step (granian's listen() included) runs before this loop
        # resumes from its sleep; a worker that failed to start is not alive any more.
        while not self._listening() and not task.done():
            await asyncio.sleep(0.005)
        if task.done():
            task.result()  # raise its error, if it has one
            raise UnavailableError("granian stopped while starting; see its log lines above")
        self._sock.close()  # granian has its own duplicate

    async def stop(self) -> None:
        task = self._task
        if task is None:
            return
        self._server.stop()  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait_for(asyncio.shield(task), self._drain_timeout_s)
        except TimeoutError:
            log.warning(
                "requests still in flight after %.1f s of draining; cutting them off",
                self._drain_timeout_s,
            )
            task.cancel()
