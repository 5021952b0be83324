"""How the workers of ``serve --workers N`` share their dashboard counts, on demand.

The supervisor creates one private directory (mode 0700,
:func:`~modelyard.monitoring.live_dir.prepare_dir`) and passes it to its workers
(``settings.live_peers_dir``). Each worker listens there on a Unix socket named after its pid
(:class:`PeerServer`); the worker a dashboard poll reaches lists the other sockets and asks them
all at once, with a short timeout, for their raw counts of one window (:class:`PeerClient`; a
timeseries poll asks twice, see :func:`~modelyard.frontends.ui_series.fleet_timeseries`).
Nothing happens per inference request: only a poll costs anything.

The protocol is one exchange per connection: the asker sends one JSON line, a window and the
parts it wants (:func:`~modelyard.frontends.ui_counts.request_to_json`, at most
:data:`MAX_REQUEST_BYTES`), the worker answers one JSON line, its counts
(:func:`~modelyard.frontends.ui_counts.counts_to_json`), and closes. A request line that is too
long, malformed or slow to come is answered with an error line and the connection closed; an
answer longer than :data:`MAX_ANSWER_BYTES`, malformed, or later than the timeout leaves that
worker out of the dashboard's answer, which says how many workers it covers. A dead worker's
socket file (removed by the supervisor when it restarts the worker) refuses connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Collection

from modelyard.frontends.ui_counts import (
    Want,
    Window,
    WindowCounts,
    counts_from_json,
    counts_to_json,
    request_from_json,
    request_to_json,
)
from modelyard.frontends.ui_series import SPLIT_S, LiveSeries
from modelyard.monitoring.live_dir import SUFFIX, socket_path

log = logging.getLogger("modelyard.ui")

#: The longest request line a worker reads (a window and up to 100 model names of 128 chars).
MAX_REQUEST_BYTES = 32 * 1024
#: The longest answer read from a peer (100 busy models over 15 minutes at 1 s steps fit).
MAX_ANSWER_BYTES = 64 * 2**20
#: How long the asking worker waits for all its peers together.
ASK_TIMEOUT_S = 0.5
#: How long a worker waits for the request line of a client that connected.
REQUEST_TIMEOUT_S = 2.0
#: How long a worker spends on one connection in all (reading, counting, writing).
HANDLE_TIMEOUT_S = 10.0
#: Socket files looked at in the directory (there is one per worker; at most 64 workers).
MAX_PEERS = 256


class PeerServer:
    """Answers the other workers' requests for this worker's :class:`LiveSeries` counts."""

    def __init__(self, directory: str, live: LiveSeries, *, name: str | None = None) -> None:
        self.path = socket_path(directory, name or str(os.getpid()))
        self.live = live
        # the longest window asked for: the charts' history or the observed split
        self.max_seconds = max(live.history_s, SPLIT_S + 1)
        self.refused = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.remove()  # left by an earlier process that had this pid
        # start_serving=False: nothing to wait for until self._server holds the bound socket,
        # so a cancellation cannot leave it unclosed
        self._server = await asyncio.start_unix_server(
            self._handle, path=self.path, limit=MAX_REQUEST_BYTES, start_serving=False
        )
        os.chmod(self.path, 0o600)
        await self._server.start_serving()

    async def run(self) -> None:
        """Serve until cancelled (an :attr:`App.background` task), then remove the socket."""
        try:
            await self.start()
            assert self._server is not None
            await self._server.serve_forever()
        finally:  # also when cancelled before listening: the file exists once bound
            self.close()

    def close(self) -> None:
        """Stop listening and remove the socket file (call it on the event loop)."""
        if self._server is not None:
            self._server.close()
        self.remove()

    def remove(self) -> None:
        """Remove the socket file (safe from any thread: a closer at shutdown)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HANDLE_TIMEOUT_S):
                writer.write(await self._answer(reader))
                writer.close()  # after the answer is flushed
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the asker gave up (its timeout) or does not read the answer
        except Exception:
            log.exception("dashboard peer request failed")
        finally:
            writer.transport.abort()  # nothing once closed; else drop what was not read

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                line = await reader.readline()  # ValueError beyond MAX_REQUEST_BYTES
            if not line.endswith(b"\n"):
                raise ValueError("the request is one line of JSON, ended by a newline")
            window, want = request_from_json(json.loads(line), max_seconds=self.max_seconds)
        except (ValueError, TimeoutError) as exc:
            self.refused += 1
            error = str(exc)[:200] or type(exc).__name__
            return json.dumps({"error": error}).encode() + b"\n"
        return await asyncio.to_thread(self._encode, window, want)

    def _encode(self, window: Window, want: Want) -> bytes:
        counts = counts_to_json(self.live.counts(window, want))
        return json.dumps(counts, separators=(",", ":")).encode() + b"\n"


class PeerClient:
    """Asks every other worker's :class:`PeerServer` for its counts of a window.

    :meth:`ask` returns one entry per socket file found besides this worker's own (by path):
    the peer's counts, or None when it did not answer in ``timeout_s`` (all peers are asked at
    once) or answered something else. It never raises: a failing peer never fails the page."""

    def __init__(
        self, directory: str, *, name: str | None = None, timeout_s: float = ASK_TIMEOUT_S
    ) -> None:
        self.directory = directory
        self.own = (name or str(os.getpid())) + SUFFIX
        self.timeout_s = timeout_s

    def peer_paths(self) -> list[str]:
        try:
            with os.scandir(self.directory) as entries:
                names = [e.name for e in entries if e.name.endswith(SUFFIX) and e.name != self.own]
        except OSError:
            return []
        return [os.path.join(self.directory, n) for n in sorted(names)[:MAX_PEERS]]

    async def ask(
        self, window: Window, want: Want, among: Collection[str] | None = None
    ) -> dict[str, WindowCounts | None]:
        """Every peer's counts (or those of the peers at the paths ``among``)."""
        request = json.dumps(request_to_json(window, want)).encode() + b"\n"
        paths = self.peer_paths() if among is None else list(among)
        answers = await asyncio.gather(*(self._ask(path, request, window) for path in paths))
        return dict(zip(paths, answers, strict=True))

    async def _ask(self, path: str, request: bytes, window: Window) -> WindowCounts | None:
        writer = None
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_unix_connection(path, limit=MAX_ANSWER_BYTES)
                writer.write(request)
                await writer.drain()
                line = await reader.readline()
            return await asyncio.to_thread(_decode, line, window)
        except Exception as exc:  # dead, slow or confused: left out, never fails the page
            log.debug("dashboard peer %s left out: %r", path, exc)
            return None
        finally:
            if writer is not None:
                writer.transport.abort()  # the answer is read (or given up on): close now
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


def _decode(line: bytes, window: Window) -> WindowCounts:
    return counts_from_json(json.loads(line), window)
