"""A listening socket that accepts every waiting connection at once, for uvicorn on uvloop.

uvloop's own listener (libuv's) accepts one connection per event-loop iteration. On a server
busy with a few hundred keep-alive connections an iteration takes tens of milliseconds, so a
burst of new connections (a load balancer reconnecting, clients restarting) waits in the
kernel's backlog for as many iterations: seconds, measured in BENCHMARKS.md (2026-11-23,
"accepting connections"). asyncio's listener accepts up to the backlog per readiness event;
:class:`BatchListener` does that on any loop, with the loop's own transports
(``connect_accepted_socket``), and stands in for the ``asyncio.Server`` uvicorn keeps.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How long to stop accepting when the process is out of file descriptors (asyncio's value).
RETRY_AFTER_EMFILE_S = 1.0
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class BatchListener:
    """Listens on ``sock`` and hands each accepted connection to ``protocol_factory`` on the
    running loop; up to ``backlog`` connections are accepted per readiness event."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.Protocol],
        sock: socket.socket,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sock = sock
        self._backlog = max(backlog, 1)
        self._handshakes: set[asyncio.Task[object]] = set()
        self._serving = True
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        sock.listen(self._backlog)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while it waited in the backlog
            except OSError as exc:
                if exc.errno not in _OUT_OF_FDS:
                    log.warning("accept failed: %s", exc)
                    return
                # Out of descriptors: the waiting connections stay in the backlog until some
                # close; accepting again at once would spin the loop.
                log.error("cannot accept connections (%s); again in %gs", exc, RETRY_AFTER_EMFILE_S)
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(RETRY_AFTER_EMFILE_S, self._resume)
                return
            self._start(conn)

    def _start(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as both loops' listeners do
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
        self._handshakes.add(task)
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[object]) -> None:
        self._handshakes.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("could not set up an accepted connection: %r", exc)

    def _resume(self) -> None:
        self._retry = None
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    # The part of asyncio.Server that uvicorn uses.
    def close(self) -> None:
        """Stop accepting; the socket itself is closed by its owner."""
        if not self._serving:
            return
        self._serving = False
        if self._retry is not None:
            self._retry.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())

    async def wait_closed(self) -> None:
        """Return once connections accepted before :meth:`close` are set up."""
        if self._handshakes:
            await asyncio.wait(set(self._handshakes))
