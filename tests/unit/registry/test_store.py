"""The SQL store and schema migrations (SQLite; PostgreSQL runs in tests/integration)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import FailedPreconditionError, UnavailableError
from modelyard.registry import Registry
from modelyard.registry.migrations import (
    MIGRATIONS,
    Migration,
    check_migrations,
    latest_version,
    migrate,
    schema_version,
)
from modelyard.registry.postgres import redact, to_psycopg
from modelyard.registry.store import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "x.db")
    yield s
    s.close()


def test_schema_version_is_recorded(registry: Registry, clock: FakeClock) -> None:
    assert registry.schema_version() == latest_version() == len(MIGRATIONS)
    with registry.store.transaction(write=False) as tx:
        rows = tx.execute("SELECT version, description, applied_at FROM schema_version").rows
    assert [(r[0], r[1]) for r in rows] == [(m.version, m.description) for m in MIGRATIONS]
    assert all(r[2] == clock.wall() for r in rows)


def test_migrate_applies_only_missing_steps_once(store: SqliteStore) -> None:
    assert migrate(store) == len(MIGRATIONS)
    extra = (
        *MIGRATIONS,
        Migration(len(MIGRATIONS) + 1, "extra table", ("CREATE TABLE extra (id INTEGER)",)),
    )
    n = len(MIGRATIONS) + 1
    assert migrate(store, extra) == n
    assert migrate(store, extra) == n  # nothing left to do: CREATE TABLE is not re-run
    assert schema_version(store) == n


def test_a_migration_step_may_be_code(store: SqliteStore) -> None:
    seen: list[str] = []
    step = Migration(len(MIGRATIONS) + 1, "code", apply=lambda tx: seen.append(tx.dialect))
    migrate(store, (*MIGRATIONS, step))
    assert seen == ["sqlite"]


def test_a_failing_migration_rolls_back_entirely(store: SqliteStore) -> None:
    migrate(store)
    bad = Migration(
        len(MIGRATIONS) + 1, "bad", ("CREATE TABLE t2 (id INTEGER)", "CREATE TABLE oops (")
    )
    with pytest.raises(Exception, match=r"syntax error|incomplete input"):
        migrate(store, (*MIGRATIONS, bad))
    assert schema_version(store) == len(MIGRATIONS)
    with store.transaction(write=False) as tx:
        names = {r[0] for r in tx.execute("SELECT name FROM sqlite_master").rows}
    assert "t2" not in names


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Registry(tmp_path / "r").close()
    newer = SqliteStore(tmp_path / "r" / "registry.db")
    migrate(newer, (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "from the future")))
    newer.close()
    with pytest.raises(
        FailedPreconditionError, match=rf"schema version {len(MIGRATIONS) + 1}, newer .* upgrade"
    ):
        Registry(tmp_path / "r")


def test_migrations_must_be_contiguous() -> None:
    check_migrations(MIGRATIONS)
    with pytest.raises(ValueError, match=r"1..N"):
        check_migrations((Migration(1, "a"), Migration(3, "c")))


def test_transaction_rolls_back_on_error(store: SqliteStore) -> None:
    with store.transaction() as tx:
        tx.execute("CREATE TABLE t (v INTEGER)")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO t (v) VALUES (?)", (1,))
        raise RuntimeError("abort")
    with store.transaction(write=False) as tx:
        assert tx.execute("SELECT COUNT(*) FROM t").scalar() == 0


def test_sqlite_is_in_wal_mode_with_foreign_keys(store: SqliteStore) -> None:
    with store.transaction(write=False) as tx:
        assert tx.execute("PRAGMA journal_mode").scalar() == "wal"
        assert tx.execute("PRAGMA foreign_keys").scalar() == 1


def test_each_thread_has_its_own_connection(store: SqliteStore) -> None:
    migrate(store)
    ids: list[int] = []

    def grab() -> None:
        with store.transaction(write=False) as tx:
            ids.append(id(tx._conn))  # type: ignore[attr-defined]

    grab()
    grab()
    t = threading.Thread(target=grab)
    t.start()
    t.join()
    assert ids[0] == ids[1] != ids[2]


def test_placeholders_are_translated_for_psycopg() -> None:
    assert to_psycopg("SELECT a FROM t WHERE x = ? AND y LIKE '5%'") == (
        "SELECT a FROM t WHERE x = %s AND y LIKE '5%%'"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("postgresql://:pw@h/db", "postgresql://h/db"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_opening_a_locked_new_database_retries_then_reports(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # like a sibling process switching the file to WAL
    try:
        store = SqliteStore(path, busy_timeout_s=0.05)
        with pytest.raises(UnavailableError, match="database is locked"), store.transaction():
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.close()
    reopened = SqliteStore(path)
    with reopened.transaction(write=False) as tx:
        assert tx.execute("PRAGMA journal_mode").scalar() == "wal"
    reopened.close()


def test_a_forked_child_opens_its_own_connection(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.transaction(write=False) as tx:
        parent_conn = tx._conn  # type: ignore[attr-defined]
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as seen from a forked child
    with store.transaction(write=False) as tx:
        child_conn = tx._conn  # type: ignore[attr-defined]
        assert tx.execute("SELECT 1").scalar() == 1
    assert child_conn is not parent_conn
    assert parent_conn.execute("SELECT 1").fetchone() == (1,)  # the parent's stays open
    parent_conn.close()
