"""Rollout state and the event log in the registry database (tables ``rollouts`` and ``events``).

State writes are compare-and-set on the stored JSON: the controller and an operator's
``modelyard rollout pause`` may act at the same moment, and the later writer must notice that
the state it decided from is gone instead of overwriting a decision it never saw. Events of a
decision are inserted in the same transaction as its state.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.errors import InvalidInputError
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.registry.store import Tx
from modelyard.traffic.rollout import Event, RolloutState
from modelyard.traffic.spec import EndpointSpec

log = logging.getLogger("modelyard.controller")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


# ---- endpoint specs (the traffic layer's EndpointStore owns the table) --------------------------
def load_endpoint(registry: Registry, name: str) -> EndpointSpec:
    """The stored spec of endpoint ``name``; NotFoundError when there is none."""
    return EndpointStore(registry).get(name).spec


def load_endpoints(registry: Registry) -> list[EndpointSpec]:
    """Every readable stored endpoint spec, by name (unreadable ones are logged and skipped)."""
    return [record.spec for record in EndpointStore(registry).list(skip_invalid=True)]


# ---- rollout state -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredRollout:
    """A rollout state as read; ``raw`` is the stored text, the token for compare-and-set."""

    endpoint: str
    state: RolloutState
    raw: str
    updated_at: float


def _stored(endpoint: str, raw: str, updated_at: float) -> StoredRollout | None:
    try:
        return StoredRollout(endpoint, RolloutState.from_json(json.loads(raw)), raw, updated_at)
    except (InvalidInputError, ValueError) as exc:
        log.warning("endpoint %s: stored rollout state is unreadable: %s", endpoint, exc)
        return None


def load_rollout(registry: Registry, endpoint: str) -> StoredRollout | None:
    with registry.store.transaction(write=False) as tx:
        row = tx.execute(
            "SELECT state, updated_at FROM rollouts WHERE endpoint = ?", (endpoint,)
        ).one()
    return None if row is None else _stored(endpoint, str(row[0]), float(row[1]))


def load_rollouts(registry: Registry) -> dict[str, StoredRollout]:
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute("SELECT endpoint, state, updated_at FROM rollouts").rows
    found = (_stored(str(ep), str(raw), float(at)) for ep, raw, at in rows)
    return {s.endpoint: s for s in found if s is not None}


def save_rollout(
    registry: Registry,
    endpoint: str,
    state: RolloutState,
    *,
    expected: str | None,
    events: Sequence[Event] = (),
    now: float,
) -> bool:
    """Store ``state`` if the stored text still is ``expected`` (None: no row yet), with its
    ``events``, atomically. False when another writer came first (nothing is written)."""
    text = _dumps(state.to_json())
    with registry.store.transaction(write=True) as tx:
        if expected is None:
            done = tx.execute(
                "INSERT INTO rollouts (endpoint, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (endpoint) DO NOTHING",
                (endpoint, text, now),
            ).rowcount
        else:
            done = tx.execute(
                "UPDATE rollouts SET state = ?, updated_at = ? WHERE endpoint = ? AND state = ?",
                (text, now, endpoint, expected),
            ).rowcount
        if done != 1:
            return False
        add_events(tx, endpoint, events, now)
    return True


# ---- events --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventRecord:
    id: str
    ts: float
    kind: str
    subject: str
    message: str
    data: dict[str, Any]


def add_events(tx: Tx, subject: str, events: Sequence[Event], now: float) -> None:
    for event in events:
        tx.execute(
            "INSERT INTO events (id, ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, now, event.kind, subject, event.message, _dumps(event.data)),
        )


def list_events(
    registry: Registry, subject: str, *, kind_prefix: str = "rollout.", limit: int = 50
) -> list[EventRecord]:
    """The newest ``limit`` events of ``subject`` whose kind starts with ``kind_prefix``,
    oldest first."""
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute(
            "SELECT id, ts, kind, subject, message, data FROM events "
            "WHERE subject = ? AND substr(kind, 1, ?) = ? ORDER BY ts DESC, id LIMIT ?",
            (subject, len(kind_prefix), kind_prefix, limit),
        ).rows
    records = [
        EventRecord(str(i), float(ts), str(kind), str(subj), str(msg), _loads(data))
        for i, ts, kind, subj, msg, data in rows
    ]
    records.reverse()
    return records


def _loads(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(str(text))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
