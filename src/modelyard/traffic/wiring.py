"""Plugs endpoints and their traffic policies into a server :class:`~modelyard.app.App`
(listed in ``app._features``).

* wraps ``app.dataplane`` in a :class:`~modelyard.traffic.dataplane.TrafficDataPlane`, shared
  as ``app.extras["traffic"]`` (the control feature sets its ``rollout_view`` and ``shadows``);
* mounts the endpoint management API (``/v2/endpoints``);
* loads the registry's endpoints now, and reloads them in the background whenever the registry
  change counter moves (polled every ``settings.watch_interval_s``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from modelyard.errors import ModelYardError
from modelyard.registry.endpoints import EndpointRecord, EndpointStore
from modelyard.traffic.dataplane import TrafficDataPlane
from modelyard.traffic.management import management_routes
from modelyard.traffic.materialized import MaterializedTables

if TYPE_CHECKING:
    from modelyard.app import App

log = logging.getLogger("modelyard.traffic")


def install(app: App) -> None:
    """Wrap the dataplane, add the management routes, start watching the registry."""
    serving = app.serving

    async def resolve(model: str, ref: str | None) -> str:
        return str((await serving.resolver.resolve(model, ref)).version)

    store = EndpointStore(app.registry)
    tables = MaterializedTables(app.registry.store)
    app.closers.append(tables.close)
    traffic = TrafficDataPlane(
        app.dataplane, resolve=resolve, observer=app.observers, clock=app.clock, tables=tables
    )
    watcher = EndpointWatcher(store, traffic)
    watcher.refresh()
    app.dataplane = traffic
    app.extras["traffic"] = traffic
    app.extras["endpoints"] = store
    app.routes.extend(management_routes(store, traffic))
    interval = app.settings.watch_interval_s
    app.background.append(lambda: watcher.run(interval))


class EndpointWatcher:
    """Keeps a TrafficDataPlane's endpoints in step with the registry."""

    def __init__(self, store: EndpointStore, traffic: TrafficDataPlane) -> None:
        self.store = store
        self.traffic = traffic
        self.seen: int | None = None
        #: (name, revision) of the endpoints last loaded: what a reload changed, for the log.
        self.revisions: dict[str, int] = {}

    def refresh(self) -> bool:
        """Reload now when the registry changed since the last look; True when it reloaded."""
        seq = self.store.revision()
        if seq == self.seen:
            return False
        self._loaded(self.store.list(skip_invalid=True), seq)
        return True

    async def poll(self) -> bool:
        """:meth:`refresh` with the registry reads off the event loop."""
        seq = await asyncio.to_thread(self.store.revision)
        if seq == self.seen:
            return False
        self._loaded(await asyncio.to_thread(self.store.list, skip_invalid=True), seq)
        return True

    def _loaded(self, records: list[EndpointRecord], seq: int) -> None:
        self.traffic.load(records)
        self.seen = seq
        before, self.revisions = self.revisions, {r.name: r.revision for r in records}
        changes = describe_changes(before, self.revisions)
        if changes:  # the counter also moves on pushes and alias moves: those are not news here
            log.info("endpoints changed: %s", changes)

    async def run(self, interval_s: float) -> None:
        """Poll forever (until cancelled); a failed poll is logged and retried next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll()
            except ModelYardError as exc:
                log.warning("could not reload endpoints: %s", exc)


def describe_changes(before: dict[str, int], after: dict[str, int]) -> str:
    """``"+new, ~updated (revision 3), -deleted"``, or "" when nothing changed."""
    parts = [f"+{n}" for n in sorted(after.keys() - before.keys())]
    parts += [
        f"~{n} (revision {after[n]})"
        for n in sorted(after.keys() & before.keys())
        if after[n] != before[n]
    ]
    parts += [f"-{n}" for n in sorted(before.keys() - after.keys())]
    return ", ".join(parts)
