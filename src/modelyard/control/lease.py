"""Named leases in the registry database: "exactly one controller per registry".

A lease is a row (name, holder, expires_at). Taking it is one atomic statement that succeeds when
the row is free, expired, or already ours; holders renew before it expires. Works the same on
SQLite and PostgreSQL, with the registry's injected clock (wall time, shared across hosts).
"""

from __future__ import annotations

from modelyard.registry.registry import Registry

CONTROLLER_LEASE = "controller"


def try_acquire(registry: Registry, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew lease ``name`` for ``holder`` until now + ``ttl_s``; True when held."""
    now = registry.clock.wall()
    with registry.store.transaction(write=True) as tx:
        tx.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
            (name, holder, now + ttl_s, now),
        )
        row = tx.execute("SELECT holder FROM leases WHERE name = ?", (name,)).one()
    return row is not None and row[0] == holder


def release(registry: Registry, name: str, holder: str) -> None:
    """Give the lease up now (only if ``holder`` has it), so a standby takes over at once."""
    with registry.store.transaction(write=True) as tx:
        tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


def holder_of(registry: Registry, name: str) -> str | None:
    """Who holds lease ``name`` now (None when free or expired)."""
    now = registry.clock.wall()
    with registry.store.transaction(write=False) as tx:
        row = tx.execute(
            "SELECT holder FROM leases WHERE name = ? AND expires_at >= ?", (name, now)
        ).one()
    return None if row is None else str(row[0])
