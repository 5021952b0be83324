"""The PostgreSQL engine of the registry store (psycopg 3, an optional extra)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelyard.errors import UnavailableError, install_hint
from modelyard.registry.store import Result, ThreadConnections, Tx, redact

if TYPE_CHECKING:
    import psycopg


@functools.lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """Translate ``?`` placeholders to psycopg's ``%s`` (escaping literal ``%`` first).

    Registry SQL never has ``?`` inside string literals, so a plain replacement is exact.
    """
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStore:
    """PostgreSQL through psycopg 3: one autocommit connection per thread, explicit transactions."""

    dialect = "postgresql"

    def __init__(self, url: str, *, connect_timeout_s: int = 10) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise install_hint("psycopg", "postgres") from exc
        self._psycopg = psycopg
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._conns: ThreadConnections[psycopg.Connection[Any]] = ThreadConnections(
            self._connect, lambda c: c.close()
        )

    def describe(self) -> str:
        return redact(self.url)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            # No server-side prepared statements: they break behind PgBouncer in transaction
            # mode, and registry queries are far from the hot path.
            return self._psycopg.connect(
                self.url,
                autocommit=True,
                prepare_threshold=None,
                connect_timeout=self.connect_timeout_s,
            )
        except self._psycopg.Error as exc:
            raise UnavailableError(
                f"registry: cannot connect to {self.describe()}: {exc}".strip()
            ) from exc

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        # READ COMMITTED is enough: writers that must not race lock rows with UPDATE … RETURNING
        # (or take an advisory lock), which re-reads the committed row after waiting.
        conn = self._conns.get()
        try:
            with conn.transaction():
                yield _PgTx(conn)
        except self._psycopg.OperationalError as exc:
            self._conns.discard(conn)
            raise UnavailableError(f"registry database error ({self.describe()}): {exc}") from exc

    def close(self) -> None:
        self._conns.close_all()


class _PgTx:
    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        cur = self._conn.execute(to_psycopg(sql), tuple(params))
        rows = cur.fetchall() if cur.description is not None else []
        return Result(rows=[tuple(r) for r in rows], rowcount=cur.rowcount)
