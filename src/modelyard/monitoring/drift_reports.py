"""Drift data in the registry: per-replica sketches in, reports and events out.

Tables (registry migration 4 and 3): ``drift_sketches(replica, interval_start, model, version,
sketch)``, ``drift_reports(model, version, computed_at, report)`` and ``events``. The controller's
pass (:func:`run_drift_pass`) merges the sketches of the intervals that ended in the last window
(and since its previous pass) per version, compares them
with the version's reference (:func:`modelyard.monitoring.drift.compare`), stores the report, and
records an event of kind ``drift`` when a version enters or leaves the alarm state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from modelyard.errors import ModelNotFoundError, ModelYardError
from modelyard.monitoring import drift
from modelyard.registry.registry import Registry

log = logging.getLogger("modelyard.drift")

EVENT_KIND = "drift"
MIN_SKETCH_RETENTION_S = 3600.0  # sketches are kept for max(this, 10 windows)
REPORT_RETENTION_S = 30 * 86400.0

#: The replicas' sketch interval when not given (``stats_interval_s``'s default).
DEFAULT_SKETCH_INTERVAL_S = 10.0

SketchKey = tuple[float, str, str]  # (interval_start, model, version)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def write_sketches(registry: Registry, replica: str, sketches: Mapping[SketchKey, Any]) -> None:
    """Store one replica's sketches; a row already there for the same interval (written by an
    earlier flush of this replica) is merged with, not replaced."""
    with registry.store.transaction(write=True) as tx:
        for (start, model, version), sketch in sketches.items():
            if not version.isdigit():
                continue
            key = (replica, start, model, int(version))
            row = tx.execute(
                "SELECT sketch FROM drift_sketches "
                "WHERE replica = ? AND interval_start = ? AND model = ? AND version = ?",
                key,
            ).one()
            value = dict(sketch)
            if row is not None:
                before = orjson.loads(row[0])
                if before.get("reference_id") == value.get("reference_id"):
                    value = {
                        **drift.merge_sketches([before, value]),
                        "reference_id": value.get("reference_id"),
                    }
            tx.execute(
                "INSERT INTO drift_sketches (replica, interval_start, model, version, sketch) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (replica, interval_start, model, version) "
                "DO UPDATE SET sketch = excluded.sketch",
                (*key, _dumps(value)),
            )


def load_sketches(registry: Registry, since: float) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every sketch of an interval that started at or after ``since``, per (model, version)."""
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT model, version, sketch FROM drift_sketches WHERE interval_start >= ?",
            (since,),
        ).rows
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for model, version, sketch in rows:
        found.setdefault((str(model), int(version)), []).append(orjson.loads(sketch))
    return found


def load_ended(
    registry: Registry, after: float, until: float, interval_s: float
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every sketch of an interval (``interval_s`` long) that ended in (``after``, ``until``],
    per (model, version)."""
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT model, version, sketch FROM drift_sketches "
            "WHERE interval_start > ? AND interval_start <= ?",
            (after - interval_s, until - interval_s),
        ).rows
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for model, version, sketch in rows:
        found.setdefault((str(model), int(version)), []).append(orjson.loads(sketch))
    return found


def save_report(registry: Registry, report: Mapping[str, Any]) -> None:
    with registry.store.transaction(write=True) as tx:
        tx.execute(
            "INSERT INTO drift_reports (model, version, computed_at, report) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (model, version, computed_at) DO UPDATE SET report = excluded.report",
            (report["model"], report["version"], report["computed_at"], _dumps(report)),
        )


def latest_report(
    registry: Registry, model: str, version: int | None = None
) -> dict[str, Any] | None:
    """The newest report of ``model`` (of one ``version`` when given), or None."""
    sql = "SELECT report FROM drift_reports WHERE model = ?"
    params: tuple[Any, ...] = (model,)
    if version is not None:
        sql += " AND version = ?"
        params = (model, version)
    with registry.store.transaction(write=False) as tx:
        row = tx.execute(sql + " ORDER BY computed_at DESC LIMIT 1", params).one()
    return None if row is None else dict(orjson.loads(row[0]))


def record_event(
    registry: Registry, subject: str, message: str, data: Mapping[str, Any], ts: float
) -> None:
    with registry.store.transaction(write=True) as tx:
        tx.execute(
            "INSERT INTO events (id, ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, ts, EVENT_KIND, subject, message, _dumps(data)),
        )


def drift_events(registry: Registry, model: str | None = None) -> list[dict[str, Any]]:
    """Drift events, oldest first (of one model when given)."""
    sql = "SELECT ts, subject, message, data FROM events WHERE kind = ?"
    params: tuple[Any, ...] = (EVENT_KIND,)
    if model is not None:
        sql += " AND subject = ?"
        params = (EVENT_KIND, model)
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute(sql + " ORDER BY ts", params).rows
    return [
        {"ts": ts, "subject": subject, "message": message, "data": orjson.loads(data)}
        for ts, subject, message, data in rows
    ]


def run_drift_pass(
    registry: Registry,
    *,
    now: float,
    window_s: float,
    since: float | None = None,
    sketch_interval_s: float = DEFAULT_SKETCH_INTERVAL_S,
    thresholds: drift.Thresholds = drift.DEFAULT_THRESHOLDS,
) -> list[dict[str, Any]]:
    """Compute, store and return one report per version with sketches in the window and a
    drift reference; record ``drift`` events on alarm transitions; delete old sketches and
    reports.

    The window holds the sketches of intervals (``sketch_interval_s`` long: the replicas'
    ``stats_interval_s``) that ENDED in (``now - window_s``, ``now``], reaching back to
    ``since`` (the previous pass's ``now``) when that is earlier. A sketch is written when its
    interval ends, so selecting by end (not start) and from the previous pass on judges every
    interval written before a pass, including one that ended just after the previous pass."""
    after = now - window_s if since is None else min(now - window_s, since)
    found = load_ended(registry, after, now, sketch_interval_s)
    reports = []
    for (model, version), sketches in sorted(found.items()):
        try:
            report = _report(registry, model, version, sketches, now, window_s, thresholds)
        except ModelYardError as exc:
            log.warning("drift report for %s:%d skipped: %s", model, version, exc.message)
            continue
        if report is None:
            continue
        previous = latest_report(registry, model, version)
        save_report(registry, report)
        _maybe_event(registry, previous, report)
        reports.append(report)
    prune(registry, now, max(MIN_SKETCH_RETENTION_S, 10 * window_s))
    return reports


def _report(
    registry: Registry,
    model: str,
    version: int,
    sketches: list[dict[str, Any]],
    now: float,
    window_s: float,
    thresholds: drift.Thresholds,
) -> dict[str, Any] | None:
    try:
        metadata = registry.get_version(model, version).metadata
    except ModelNotFoundError:
        return None
    raw = metadata.get(drift.REFERENCE_KEY)
    if raw is None:
        return None
    reference = drift.check_reference(raw)
    ref_id = drift.reference_id(reference)
    merged = drift.merge_sketches(s for s in sketches if s.get("reference_id") == ref_id)
    report = drift.compare(reference, merged, thresholds)
    return {
        "model": model,
        "version": version,
        "computed_at": now,
        "window_s": window_s,
        "reference_id": ref_id,
        "thresholds": {
            "psi_warn": thresholds.psi_warn,
            "psi_alarm": thresholds.psi_alarm,
            "ks_alarm": thresholds.ks_alarm,
            "min_rows": thresholds.min_rows,
        },
        **report,
    }


def _maybe_event(
    registry: Registry, previous: Mapping[str, Any] | None, report: Mapping[str, Any]
) -> None:
    was_alarm = previous is not None and previous.get("status") == "alarm"
    status = report["status"]
    ref = f"{report['model']}:{report['version']}"
    if status == "alarm" and not was_alarm:
        worst = ", ".join(report["alarms"])
        message = f"drift alarm on {ref}: {worst}"
    elif was_alarm and status in ("ok", "warn"):
        message = f"drift cleared on {ref}"
    else:
        return
    data = {
        "version": report["version"],
        "status": status,
        "alarms": report["alarms"],
        "computed_at": report["computed_at"],
    }
    record_event(registry, report["model"], message, data, report["computed_at"])
    log.warning("%s", message)


def prune(registry: Registry, now: float, sketch_retention_s: float) -> None:
    with registry.store.transaction(write=True) as tx:
        tx.execute(
            "DELETE FROM drift_sketches WHERE interval_start < ?", (now - sketch_retention_s,)
        )
        tx.execute("DELETE FROM drift_reports WHERE computed_at < ?", (now - REPORT_RETENTION_S,))
