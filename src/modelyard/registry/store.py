"""The SQL store behind the registry: one small interface, two engines (SQLite and PostgreSQL).

Everything above this module writes SQL once, with ``?`` placeholders and portable types
(``TEXT``, ``BIGINT``, ``DOUBLE PRECISION``, ``ON CONFLICT``, ``RETURNING``); each engine translates
what it must. Every statement is parameterised.

Connections are per thread (a SQLite or psycopg connection must not carry two transactions at once)
and per process: after a ``fork`` the child opens its own instead of sharing the parent's socket.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from modelyard.errors import FailedPreconditionError, InvalidInputError, UnavailableError

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one statement: its rows (empty when it returns none) and rowcount."""

    rows: list[Row]
    rowcount: int

    def one(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class Tx(Protocol):
    """An open transaction. SQL uses ``?`` placeholders on every engine."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``, for the rare statement that differs."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result: ...


class Store(Protocol):
    """A SQL database holding the registry's metadata.

    ``transaction(write=True)`` serialises writers where the engine needs it (SQLite takes the
    write lock up front with ``BEGIN IMMEDIATE`` so read-then-write transactions cannot deadlock).
    The transaction commits when the block exits normally and rolls back on an exception.
    """

    @property
    def dialect(self) -> str: ...

    def describe(self) -> str:
        """Where the store is, safe to show (no password)."""
        ...

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]: ...

    def close(self) -> None: ...


C = TypeVar("C")


class ThreadConnections(Generic[C]):
    """One connection per live thread of this process, all closed by :meth:`close_all`."""

    def __init__(self, connect: Callable[[], C], close: Callable[[C], None]) -> None:
        self._connect = connect
        self._close = close
        self._lock = threading.Lock()
        self._local = threading.local()
        self._owners: dict[int, tuple[weakref.ref[threading.Thread], C]] = {}
        self._pid = os.getpid()
        self._closed = False

    def get(self) -> C:
        if self._pid != os.getpid():
            self._forget_parent()
        conn: C | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise FailedPreconditionError("the registry is closed")
            self._prune_dead_threads()
        conn = self._connect()
        with self._lock:
            self._owners[id(conn)] = (weakref.ref(threading.current_thread()), conn)
        self._local.conn = conn
        return conn

    def discard(self, conn: C) -> None:
        """Drop a broken connection; the thread gets a fresh one next time."""
        with self._lock:
            self._owners.pop(id(conn), None)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        self._close_quietly(conn)

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for _, c in self._owners.values()]
            self._owners.clear()
        self._local = threading.local()
        for conn in conns:
            self._close_quietly(conn)

    def _prune_dead_threads(self) -> None:
        for key, (ref, conn) in list(self._owners.items()):
            thread = ref()
            if thread is None or not thread.is_alive():
                del self._owners[key]
                self._close_quietly(conn)

    def _forget_parent(self) -> None:
        # The parent's connections share sockets/file locks with it: closing them here would
        # break the parent, so the child only drops its references.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._owners = {}

    def _close_quietly(self, conn: C) -> None:
        try:
            self._close(conn)
        except Exception:
            pass  # closing a dead connection may fail; there is nothing left to release


class SqliteStore:
    """SQLite in WAL mode with a busy timeout: several threads and processes may share a file."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                f"registry: cannot create directory {self.path.parent}: {exc}"
            ) from exc
        self._conns: ThreadConnections[sqlite3.Connection] = ThreadConnections(
            self._connect, lambda c: c.close()
        )

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # close_all() may run on another thread
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise UnavailableError(f"registry: cannot open {self.describe()}: {exc}") from exc
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the database to WAL (persistent, so only the first opener really does it).

        The switch needs an exclusive lock and, unlike other statements, fails at once with
        "database is locked" instead of waiting when several processes open a new database
        together; so it is retried here, for about the busy timeout.
        """
        delay, waited = 0.002, 0.0
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or waited >= self.busy_timeout_s:
                    raise
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        conn = self._conns.get()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise UnavailableError(f"registry database busy ({self.describe()}): {exc}") from exc
        try:
            yield _SqliteTx(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise UnavailableError(
                    f"registry database error ({self.describe()}): {exc}"
                ) from exc
            raise

    def close(self) -> None:
        self._conns.close_all()


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cur = self._conn.execute(sql, tuple(params))
        rows = cur.fetchall() if cur.description is not None else []
        return Result(rows=[tuple(r) for r in rows], rowcount=cur.rowcount)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}" if user else f"{scheme}://{host}"


def open_store(url: str) -> Store:
    """A store for ``sqlite:///path.db`` or ``postgresql://…`` (``postgres://`` too).

    As in SQLAlchemy, ``sqlite:///rel.db`` is relative to the working directory and
    ``sqlite:////abs/path.db`` (four slashes) is absolute.
    """
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path or path == ":memory:":
            raise InvalidInputError(f"registry URL {url!r}: give a database file path")
        return SqliteStore(Path(path).expanduser())
    if url.startswith(("postgresql://", "postgres://")):
        from modelyard.registry.postgres import PostgresStore

        return PostgresStore(url)
    scheme = url.split("://", 1)[0]
    raise InvalidInputError(
        f"registry URL scheme {scheme!r} is not supported: use a directory, sqlite:///path.db "
        "or postgresql://user@host/db"
    )
