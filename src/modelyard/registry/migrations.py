"""The registry schema, as an ordered list of migrations recorded in ``schema_version``.

To change the schema, append a :class:`Migration` with the next number; never edit one that has
shipped. Statements are portable SQL (see ``store.py``); a step that must differ per engine uses
``apply`` and looks at ``tx.dialect``. Each registry applies what is missing when it opens, in one
transaction under a lock, so concurrent processes migrate exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import FailedPreconditionError
from modelyard.registry.store import Store, Tx

# Any constant works; it only has to be the same in every process migrating this database.
_PG_MIGRATION_LOCK = 0x6D6F64656C796172  # "modelyar"


@dataclass(frozen=True)
class Migration:
    """One schema step. ``statements`` run in order, then ``apply`` (if any)."""

    version: int
    description: str
    statements: tuple[str, ...] = ()
    apply: Callable[[Tx], None] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "models, versions, aliases",
        (
            """CREATE TABLE models (
                name TEXT PRIMARY KEY,
                created_at DOUBLE PRECISION NOT NULL,
                last_version BIGINT NOT NULL DEFAULT 0,
                metadata TEXT NOT NULL DEFAULT '{}'
            )""",
            # artifact_uri: a key relative to the registry's artifact store (so a local registry
            # directory can be moved or copied into an image), or an absolute URL.
            """CREATE TABLE versions (
                model TEXT NOT NULL REFERENCES models (name),
                version BIGINT NOT NULL,
                artifact_uri TEXT NOT NULL,
                manifest TEXT NOT NULL,
                metadata TEXT NOT NULL DEFAULT '{}',
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (model, version)
            )""",
            """CREATE TABLE aliases (
                model TEXT NOT NULL,
                alias TEXT NOT NULL,
                version BIGINT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (model, alias),
                FOREIGN KEY (model, version) REFERENCES versions (model, version)
            )""",
        ),
    ),
    Migration(
        2,
        "endpoints (traffic policies)",
        (
            # spec: the validated endpoint spec as JSON; revision grows with every apply, so
            # replicas notice changes by comparing one number.
            """CREATE TABLE endpoints (
                name TEXT PRIMARY KEY,
                spec TEXT NOT NULL,
                revision BIGINT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "rollouts, events, per-interval serving stats, leases",
        (
            """CREATE TABLE rollouts (
                endpoint TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            # id: a uuid (portable; no per-engine auto-increment). subject: endpoint or model.
            """CREATE TABLE events (
                id TEXT PRIMARY KEY,
                ts DOUBLE PRECISION NOT NULL,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                message TEXT NOT NULL,
                data TEXT NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX events_subject_ts ON events (subject, ts)",
            # One row per replica x interval x (endpoint, route, model, version); stats is JSON
            # (counts, errors by code, latency histogram, fallbacks, shadow comparisons).
            """CREATE TABLE serving_stats (
                replica TEXT NOT NULL,
                interval_start DOUBLE PRECISION NOT NULL,
                endpoint TEXT NOT NULL,
                route TEXT NOT NULL,
                model TEXT NOT NULL,
                version BIGINT NOT NULL,
                stats TEXT NOT NULL,
                PRIMARY KEY (replica, interval_start, endpoint, route, model, version)
            )""",
            "CREATE INDEX serving_stats_interval ON serving_stats (interval_start)",
            # Named leases with expiry: the controller's leader lock ("controller").
            """CREATE TABLE leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        4,
        "drift sketches and reports",
        (
            """CREATE TABLE drift_sketches (
                replica TEXT NOT NULL,
                interval_start DOUBLE PRECISION NOT NULL,
                model TEXT NOT NULL,
                version BIGINT NOT NULL,
                sketch TEXT NOT NULL,
                PRIMARY KEY (replica, interval_start, model, version)
            )""",
            """CREATE TABLE drift_reports (
                model TEXT NOT NULL,
                version BIGINT NOT NULL,
                computed_at DOUBLE PRECISION NOT NULL,
                report TEXT NOT NULL,
                PRIMARY KEY (model, version, computed_at)
            )""",
        ),
    ),
    Migration(
        5,
        "model usage and the registry change counter",
        (
            """CREATE TABLE model_usage (
                model TEXT NOT NULL,
                version BIGINT NOT NULL,
                last_request_at DOUBLE PRECISION NOT NULL,
                requests BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (model, version)
            )""",
            # One row; every registry write bumps seq, so watchers poll a single integer.
            """CREATE TABLE registry_changes (
                id INTEGER PRIMARY KEY,
                seq BIGINT NOT NULL
            )""",
            "INSERT INTO registry_changes (id, seq) VALUES (1, 0)",
        ),
    ),
    Migration(
        6,
        "index drift sketches by interval",
        ("CREATE INDEX drift_sketches_interval ON drift_sketches (interval_start)",),
    ),
)


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Migrations must be numbered 1, 2, 3, … with no gap (a gap means a lost step)."""
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..N in order, got {numbers}")


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def migrate(
    store: Store, migrations: Sequence[Migration] = MIGRATIONS, *, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Bring ``store`` up to the newest schema; returns the schema version now in force.

    Raises FailedPreconditionError when the database was written by a newer ModelYard.
    """
    check_migrations(migrations)
    latest = latest_version(migrations)
    with store.transaction(write=True) as tx:
        if tx.dialect == "postgresql":
            # CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin on PostgreSQL.
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
        tx.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at DOUBLE PRECISION NOT NULL
            )"""
        )
        current = int(tx.execute("SELECT MAX(version) FROM schema_version").scalar() or 0)
        if current > latest:
            raise FailedPreconditionError(
                f"registry {store.describe()} has schema version {current}, newer than this "
                f"ModelYard understands ({latest}); upgrade ModelYard"
            )
        for step in migrations[current:]:
            for sql in step.statements:
                tx.execute(sql)
            if step.apply is not None:
                step.apply(tx)
            tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (step.version, step.description, clock.wall()),
            )
    return latest


def schema_version(store: Store) -> int:
    """The schema version recorded in ``store`` (0 before any migration)."""
    with store.transaction(write=False) as tx:
        return int(tx.execute("SELECT MAX(version) FROM schema_version").scalar() or 0)
