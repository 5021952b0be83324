"""Plugs the dashboard (``/ui``) into a server :class:`~modelyard.app.App` (called from
:func:`modelyard.monitoring.wiring.install`).

The page and its JSON API live in :mod:`modelyard.frontends.ui_routes`; this module adds the
:class:`~modelyard.frontends.ui_series.LiveSeries` observer (``app.extras["ui_live"]``), under
the supervisor (``settings.live_peers_dir``) the worker's peer socket (a background task) and
the client that asks the other workers (:mod:`modelyard.monitoring.live_peers`), and
assembles ``GET /ui/api/overview`` from what the other features own: the registry (models,
versions, aliases), the endpoint store and rollout states (traffic split, rollout progress), the
model cache (``GET /v2/fleet/cache``'s document) and drift reports. Everything is read-only;
the observed route split adds up every worker, the model cache is this worker's.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from modelyard import __version__
from modelyard.control.store import StoredRollout, load_rollouts
from modelyard.core.fleet_wiring import ColdStarts, cache_doc
from modelyard.core.usage import UsageRecorder
from modelyard.frontends.ui_counts import route_counts
from modelyard.frontends.ui_routes import ui_routes
from modelyard.frontends.ui_series import ROUTES, LiveSeries, Peers, fleet_counts
from modelyard.monitoring import live_dir, live_peers
from modelyard.monitoring.drift import REFERENCE_KEY
from modelyard.monitoring.drift_reports import latest_report
from modelyard.registry.endpoints import EndpointRecord, EndpointStore
from modelyard.registry.records import ModelVersion
from modelyard.registry.registry import Registry
from modelyard.traffic.rollout import CANDIDATE_ROUTE, effective_weights, spec_key
from modelyard.traffic.spec import EndpointSpec, FallbackStep
from modelyard.traffic.stats import replica_name

if TYPE_CHECKING:
    from modelyard.app import App

log = logging.getLogger("modelyard.ui")

#: Versions listed per model: the newest ones, plus any an alias points at.
VERSIONS_SHOWN = 5
EVENTS_SHOWN = 12


def install(app: App) -> None:
    """Add the live-series observer and the dashboard routes (unless ``settings.ui`` is off)."""
    if not app.settings.ui:
        return
    live = LiveSeries(clock=app.clock)
    app.observers.add(live)
    app.extras["ui_live"] = live
    peers = install_peers(app, live)
    overview = OverviewSource(app, live, peers)
    app.routes.extend(ui_routes(overview.collect, live, peers))


def install_peers(app: App, live: LiveSeries) -> Peers | None:
    """Under the supervisor: serve this worker's counts on a socket in ``live_peers_dir`` and
    return the client that asks the other workers; None for a single process."""
    directory = app.settings.live_peers_dir
    if directory is None:
        return None
    if not live_dir.is_private(directory):
        log.error(
            "live_peers_dir %r is not a directory private to this user (mode 0700): the "
            "dashboard's charts show this worker's traffic only",
            directory,
        )
        return None
    server = live_peers.PeerServer(directory, live)
    app.background.append(server.run)
    app.closers.append(server.remove)
    return live_peers.PeerClient(directory)


class OverviewSource:
    """Builds the ``/ui/api/overview`` document (registry reads run in a worker thread)."""

    def __init__(self, app: App, live: LiveSeries, peers: Peers | None = None) -> None:
        self.app = app
        self.live = live
        self.peers = peers
        self.started_at = app.clock.wall()
        self._usage: UsageRecorder | None = None

    async def collect(self) -> dict[str, Any]:
        fleet = await fleet_counts(self.live, self.live.split_window(), ROUTES, self.peers)
        doc = await asyncio.to_thread(self.registry_part, route_counts(fleet.counts))
        app = self.app
        doc["server"] = {
            "version": __version__,
            "replica": replica_name(app.settings),
            "pid": os.getpid(),
            "workers": app.settings.workers,
            "ready": app.dataplane.ready(),
            "started_at": self.started_at,
            "now": app.clock.wall(),
            "in_flight": app.serving.in_flight,
            "live_workers": fleet.workers(),
        }
        doc["cache"] = cache_doc(app.cache, self._cold_starts(), app.clock.monotonic())
        return doc

    def _cold_starts(self) -> ColdStarts:
        # The fleet feature (installed after monitoring) owns the usage recorder and fetch
        # timings; without it, timings read as zero.
        usage = self.app.extras.get("usage")
        if not isinstance(usage, UsageRecorder):
            if self._usage is None:
                self._usage = UsageRecorder(self.app.registry, clock=self.app.clock)
            usage = self._usage
        fetch = self.app.extras.get("fetch_seconds")
        return ColdStarts(fetch if isinstance(fetch, dict) else {}, usage)

    def registry_part(self, observed: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        """Models, endpoints (with ``observed``, requests per route) and recent events."""
        registry = self.app.registry
        models = [model_doc(m.name, m.aliases, registry) for m in registry.list_models()]
        rollouts = load_rollouts(registry)
        endpoints = [
            endpoint_doc(record, rollouts.get(record.name), observed.get(record.name, {}))
            for record in EndpointStore(registry).list(skip_invalid=True)
        ]
        return {"models": models, "endpoints": endpoints, "events": recent_events(self.app)}


def model_doc(name: str, aliases: Mapping[str, int], registry: Registry) -> dict[str, Any]:
    """A model with its newest versions (and every aliased one), each with its drift status."""
    versions = registry.list_versions(name)
    versions.sort(key=lambda v: v.version, reverse=True)
    aliased = set(aliases.values())
    shown = [v for i, v in enumerate(versions) if i < VERSIONS_SHOWN or v.version in aliased]
    return {
        "name": name,
        "aliases": dict(sorted(aliases.items())),
        "versions_total": len(versions),
        "versions": [
            {
                "version": v.version,
                "runtime": v.manifest.runtime,
                "created_at": v.created_at,
                "aliases": sorted(a for a, n in aliases.items() if n == v.version),
                "drift": drift_doc(registry, v),
            }
            for v in shown
        ],
    }


def drift_doc(registry: Registry, version: ModelVersion) -> dict[str, Any]:
    """The newest drift report's status of one version; ``none`` without a reference."""
    if REFERENCE_KEY not in version.metadata:
        return {"status": "none"}
    report = latest_report(registry, version.model, version.version)
    if report is None:
        return {"status": "pending"}
    return {
        "status": report.get("status", "insufficient_data"),
        "computed_at": report.get("computed_at"),
        "rows": report.get("rows"),
        "alarms": report.get("alarms", []),
    }


def endpoint_doc(
    record: EndpointRecord, stored: StoredRollout | None, observed: Mapping[str, int]
) -> dict[str, Any]:
    """An endpoint's routes with configured and effective weights, its rollout and features."""
    spec = record.spec
    state = None if stored is None else stored.state
    effective = effective_weights(spec, state) or {r.name: r.weight for r in spec.routes}
    routes = [
        {"name": r.name, "target": r.label(), "weight": r.weight, "effective": effective[r.name]}
        for r in spec.routes
    ]
    if spec.rollout is not None and CANDIDATE_ROUTE in effective:
        routes.append(
            {
                "name": CANDIDATE_ROUTE,
                "target": spec.rollout.candidate.label(),
                "weight": 0.0,
                "effective": effective[CANDIDATE_ROUTE],
            }
        )
    return {
        "name": record.name,
        "revision": record.revision,
        "updated_at": record.updated_at,
        "routes": routes,
        "observed": dict(observed),
        "rollout": rollout_doc(spec, stored),
        "features": features_doc(spec),
    }


def rollout_doc(spec: EndpointSpec, stored: StoredRollout | None) -> dict[str, Any] | None:
    rollout = spec.rollout
    if rollout is None:
        return None
    doc: dict[str, Any] = {
        "candidate": rollout.candidate.label(),
        "promote_alias": rollout.promote_alias,
        "steps": [s.weight for s in rollout.steps],
        "status": "pending",  # the controller starts it on its next round
        "step": 0,
        "weight": 0.0,
    }
    if stored is None or stored.state.spec_key != spec_key(rollout):
        return doc
    state = stored.state
    step = min(state.step, len(rollout.steps) - 1)
    doc.update(
        status=state.status.value,
        step=step,
        weight=state.weight,
        reason=state.reason,
        candidate_version=state.candidate_version,
        step_started_at=state.step_started_at,
        hold_s=rollout.steps[step].hold_s,
        updated_at=stored.updated_at,
    )
    return doc


def features_doc(spec: EndpointSpec) -> dict[str, Any]:
    """The endpoint's other policies, as short labels."""
    return {
        "sticky_key": spec.sticky_key,
        "timeout_ms": spec.timeout_ms,
        "shadows": [f"{s.label()} ({s.fraction:.0%})" for s in spec.shadows],
        "fallback": [] if spec.fallback is None else [_step_label(s) for s in spec.fallback.chain],
        "hedging": spec.hedging is not None,
        "cache": spec.cache is not None,
        "cascade": None
        if spec.cascade is None
        else f"{spec.cascade.first.label()} -> {spec.cascade.then.label()}",
    }


def _step_label(step: FallbackStep) -> str:
    if step.kind == "model":
        return f"{step.model}@{step.version}" if step.version is not None else str(step.model)
    return str(step.kind)


def recent_events(app: App) -> list[dict[str, Any]]:
    """The newest registry events of any kind (rollout steps, drift alarms, endpoint changes)."""
    with app.registry.store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT ts, kind, subject, message FROM events ORDER BY ts DESC LIMIT ?",
            (EVENTS_SHOWN,),
        ).rows
    return [
        {"ts": float(ts), "kind": str(kind), "subject": str(subject), "message": str(message)}
        for ts, kind, subject, message in rows
    ]
