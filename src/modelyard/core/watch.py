"""Registry watch: a server notices registry writes (new versions, moved aliases, metadata)
within ``watch_interval_s``.

Every registry write increments one counter row (``registry_changes.seq``) in its own
transaction, so a poll is one cheap query whatever the number of models. On PostgreSQL a write
also sends ``NOTIFY modelyard_changes`` on commit; with ``use_pg_notify`` the watcher LISTENs on
a connection of its own and polls at once when woken, so changes usually arrive in milliseconds.
Polling stays on underneath: a lost notification (or a dropped LISTEN connection) costs at most
one interval.

Listeners (e.g. the hot swapper) are coroutines called with the new counter value, one at a time,
in the watcher's task; a failing listener is logged and called again on the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError
from modelyard.registry.catalog import CHANGES_CHANNEL
from modelyard.registry.registry import Registry

log = logging.getLogger("modelyard.watch")

Listener = Callable[[int], Awaitable[object]]
"""Called with the registry's new change counter after it moved (and once at start)."""


class RegistryWatcher:
    """Polls ``registry.change_seq()`` every ``interval_s`` (and when PostgreSQL notifies) and
    runs the listeners when it moved. :meth:`run` is the server's background task; tests drive
    :meth:`poll_once` directly."""

    def __init__(
        self,
        registry: Registry,
        *,
        interval_s: float,
        use_notify: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if not interval_s > 0:
            raise InvalidInputError(f"watch_interval_s must be > 0, got {interval_s!r}")
        self._registry = registry
        self._interval = interval_s
        self._use_notify = use_notify
        self._clock = clock
        self._listeners: list[Listener] = []
        self._seq: int | None = None
        self._running = False
        self._wake: asyncio.Event | None = None
        #: Wall time of the last successful poll (None before the first).
        self.last_poll_at: float | None = None
        #: How many times the listeners ran.
        self.changes_seen = 0

    @property
    def seq(self) -> int | None:
        """The counter value the listeners last saw (None before the first poll)."""
        return self._seq

    @property
    def running(self) -> bool:
        """True while :meth:`run` runs: what the listeners rely on is being kept current."""
        return self._running

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def poll_once(self) -> bool:
        """Read the counter; when it moved (or on the first poll) run every listener.
        Returns True when the listeners ran. Registry errors propagate."""
        seq = await asyncio.to_thread(self._registry.change_seq)
        self.last_poll_at = self._clock.wall()
        if seq == self._seq:
            return False
        self._seq = seq
        self.changes_seen += 1
        for listener in self._listeners:
            try:
                await listener(seq)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "registry watch: listener %r failed (retried on the next change)", listener
                )
                self._seq = None  # so the next poll runs the listeners again
        return True

    async def run(self) -> None:
        """Poll until cancelled. Registry errors are logged; polling goes on."""
        self._wake = asyncio.Event()
        notifier = self._start_notifier()
        self._running = True
        try:
            while True:
                try:
                    await self.poll_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("registry watch: poll failed: %s", exc)
                await self._wait()
        finally:
            self._running = False
            if notifier is not None:
                notifier.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await notifier

    async def _wait(self) -> None:
        """Until the interval passed or a notification woke us, whichever comes first."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
        self._wake.clear()

    def wake(self) -> None:
        """Poll now (called on a PostgreSQL notification; harmless at any time)."""
        if self._wake is not None:
            self._wake.set()

    # ---- PostgreSQL LISTEN ---------------------------------------------------------------------
    def _notify_url(self) -> str | None:
        store = self._registry.store
        if not self._use_notify or store.dialect != "postgresql":
            return None
        url = getattr(store, "url", None)
        return url if isinstance(url, str) else None

    def _start_notifier(self) -> asyncio.Task[None] | None:
        url = self._notify_url()
        if url is None:
            return None
        return asyncio.create_task(self._listen(url), name="modelyard-registry-listen")

    async def _listen(self, url: str) -> None:
        """LISTEN on a connection of our own; reconnect after an interval when it drops."""
        import psycopg

        while True:
            try:
                conn: Any = await psycopg.AsyncConnection.connect(url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self.wake()  # changes made while we were not listening
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("registry watch: LISTEN connection failed (%s); polling only", exc)
            await asyncio.sleep(self._interval)
