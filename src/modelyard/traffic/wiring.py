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
from modelyard.registry.endpoints import EndpointStore
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

    def refresh(self) -> bool:
        """Reload now when the registry changed since the last look; True when it reloaded."""
        seq = self.store.revision()
        if seq == self.seen:
            return False
        self.traffic.load(self.store.list(skip_invalid=True))
        self.seen = seq
        return True

    async def poll(self) -> bool:
        """:meth:`refresh` with the registry reads off the event loop."""
        seq = await asyncio.to_thread(self.store.revision)
        if seq == self.seen:
            return False
        records = await asyncio.to_thread(self.store.list, skip_invalid=True)
        self.traffic.load(records)
        self.seen = seq
        return True

    async def run(self, interval_s: float) -> None:
        """Poll forever (until cancelled); a failed poll is logged and retried next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await self.poll():
                    log.info("endpoints reloaded: %s", ", ".join(self.traffic.endpoint_names()))
            except ModelYardError as exc:
                log.warning("could not reload endpoints: %s", exc)
