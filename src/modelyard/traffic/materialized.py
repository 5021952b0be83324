"""Materialised predictions: answer an endpoint route from a table, live inference on a miss.

``modelyard materialize`` (:mod:`modelyard.jobs.materialize`) scores a bounded input domain
once and writes one row per input row into a SQL table (SQLite or PostgreSQL; by default the
registry's own database). A route with ``materialized: {table: T}`` then answers from that
table when every row of a request is there, stamped with the version the route serves now;
otherwise it runs the model live. The answer says which: ``parameters.answered_by`` is
``table`` or ``live``, and ``parameters.materialized`` is ``hit``, ``miss``, ``stale`` (rows
exist but were computed by another version: **never served**, the live answer is) or
``error`` (the table could not be read: live answer, error logged).

A request row finds its table row by key: the request parameter (or header) named by the
route's ``materialized.key`` (a string, or a list with one key per row) when the route names
one and the request carries it, else the digest of the row's input tensors (name, datatype,
shape, bytes), which the job stored next to each key.

Table layout (``T``): ``model, row_key, version, input_hash, outputs, updated_at``, primary key
``(model, row_key)``; ``outputs`` is JSON ``{name: {"datatype", "shape", "data"}}`` of one row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InvalidInputError
from modelyard.registry.store import Store, open_store
from modelyard.traffic.spec import Materialized, Route
from modelyard.types import Array, Datatype, InferRequest, InferResponse, RequestContext

log = logging.getLogger("modelyard.traffic")

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LOOKUP_CHUNK = 500
COLUMNS = ("model", "row_key", "version", "input_hash", "outputs", "updated_at")


def check_table(name: str) -> str:
    """``name`` when it is a plain SQL identifier (it is spliced into SQL, so nothing else)."""
    if not _TABLE.match(name):
        raise InvalidInputError(
            f"table {name!r}: use letters, digits and _ (not starting with a digit), at most 63"
        )
    return name


def db_store(db: str) -> Store:
    """A SQL store for ``--db`` / ``materialized.db``: ``sqlite:///path``, ``postgresql://…``
    or a plain file path (SQLite)."""
    if "://" not in db:
        db = f"sqlite:///{db}"
    return open_store(db)


def ensure_table(store: Store, table: str) -> None:
    t = check_table(table)
    with store.transaction(write=True) as tx:
        tx.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (model TEXT NOT NULL, row_key TEXT NOT NULL, "
            "version BIGINT NOT NULL, input_hash TEXT NOT NULL, outputs TEXT NOT NULL, "
            "updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (model, row_key))"
        )
        tx.execute(f"CREATE INDEX IF NOT EXISTS {t}_by_input ON {t} (model, input_hash)")


def upsert_rows(store: Store, table: str, rows: Iterable[Sequence[Any]]) -> int:
    """Insert or replace rows (tuples in :data:`COLUMNS` order); returns how many."""
    t = check_table(table)
    sql = (
        f"INSERT INTO {t} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (model, row_key) DO UPDATE SET version = excluded.version, "
        "input_hash = excluded.input_hash, outputs = excluded.outputs, "
        "updated_at = excluded.updated_at"
    )
    count = 0
    with store.transaction(write=True) as tx:
        for row in rows:
            tx.execute(sql, row)
            count += 1
    return count


# ---- row codec --------------------------------------------------------------------------------
def row_digests(inputs: Mapping[str, Array]) -> list[str]:
    """One digest per row (first dim) of ``inputs``: what a row is looked up by."""
    names = sorted(inputs)
    rows = {a.shape[0] if a.ndim else 1 for a in inputs.values()}
    if len(rows) != 1:
        raise InvalidInputError("inputs disagree on the number of rows")
    out: list[str] = []
    for i in range(rows.pop()):
        h = hashlib.blake2b(digest_size=16)
        for name in names:
            array = inputs[name]
            row = array[i] if array.ndim else array
            _digest_row(h, name, row)
        out.append(h.hexdigest())
    return out


def _digest_row(h: Any, name: str, row: Array) -> None:
    datatype = Datatype.from_numpy(row.dtype)
    h.update(f"{name}\x00{datatype.value}\x00{row.shape}\x00".encode())
    if datatype is Datatype.BYTES:
        for item in np.asarray(row, dtype=object).reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    else:
        h.update(np.ascontiguousarray(row, dtype=row.dtype.newbyteorder("=")).tobytes())


def encode_row_outputs(outputs: Mapping[str, Array], i: int) -> str:
    """Row ``i`` of ``outputs`` as the ``outputs`` column (JSON)."""
    doc: dict[str, Any] = {}
    for name, array in outputs.items():
        row = array[i]
        datatype = Datatype.from_numpy(row.dtype)
        if datatype is Datatype.BYTES:
            flat = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in np.asarray(row, dtype=object).reshape(-1)
            ]
        else:
            flat = np.asarray(row).reshape(-1).tolist()
        doc[name] = {"datatype": datatype.value, "shape": list(row.shape), "data": flat}
    return orjson.dumps(doc).decode()


def decode_rows(docs: Sequence[str], wanted: Sequence[str] | None) -> dict[str, Array]:
    """The ``outputs`` column of several rows stacked into batch tensors."""
    parsed = [orjson.loads(doc) for doc in docs]
    names = list(wanted) if wanted is not None else list(parsed[0])
    out: dict[str, Array] = {}
    for name in names:
        rows: list[Array] = []
        for doc in parsed:
            entry = doc.get(name)
            if entry is None:
                raise KeyError(name)
            datatype = Datatype(entry["datatype"])
            if datatype is Datatype.BYTES:
                data = np.array([str(v).encode() for v in entry["data"]], dtype=object)
            else:
                data = np.asarray(entry["data"], dtype=datatype.numpy_dtype)
            rows.append(data.reshape(entry["shape"]))
        out[name] = np.stack(rows)
    return out


# ---- serving ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Row:
    version: int
    outputs: str


Resolve = Callable[[str, str | None], Awaitable[str]]


class MaterializedTables:
    """Looks rows up for ``materialized`` routes. ``default`` is the store of a route without
    ``db`` (the registry's database); other databases are opened on first use and kept."""

    def __init__(self, default: Store) -> None:
        self._default = default
        self._stores: dict[str, Store] = {}

    def store(self, db: str | None) -> Store:
        if db is None:
            return self._default
        found = self._stores.get(db)
        if found is None:
            found = self._stores[db] = db_store(db)
        return found

    def lookup(
        self, spec: Materialized, model: str, by: str, values: Sequence[str]
    ) -> dict[str, _Row]:
        """Rows of ``model`` whose ``by`` column (``row_key`` or ``input_hash``) is in
        ``values``."""
        table = check_table(spec.table)
        out: dict[str, _Row] = {}
        with self.store(spec.db).transaction(write=False) as tx:
            for start in range(0, len(values), _LOOKUP_CHUNK):
                chunk = list(dict.fromkeys(values[start : start + _LOOKUP_CHUNK]))
                marks = ", ".join("?" for _ in chunk)
                result = tx.execute(
                    f"SELECT {by}, version, outputs FROM {table} "
                    f"WHERE model = ? AND {by} IN ({marks})",
                    [model, *chunk],
                )
                for value, version, outputs in result.rows:
                    out[str(value)] = _Row(int(version), str(outputs))
        return out

    async def answer(
        self,
        route: Route,
        ref: str | None,
        request: InferRequest,
        ctx: RequestContext,
        resolve: Resolve,
        live: Callable[[], Awaitable[InferResponse]],
    ) -> InferResponse:
        """The table's answer for ``request`` when every row is there and current, else
        ``live()``'s; either way annotated with ``answered_by`` and ``materialized``."""
        spec = route.materialized
        assert spec is not None  # only materialized routes get here
        version = await resolve(route.model, ref)
        try:
            status, outputs = await asyncio.to_thread(
                self._from_table, spec, route.model, version, request, ctx
            )
        except Exception as exc:  # the table is an optimisation: never fail the request
            log.warning("materialized %s: lookup failed, answering live: %s", spec.table, exc)
            status, outputs = "error", None
        if outputs is not None:
            params = {"answered_by": "table", "materialized": status}
            return InferResponse(route.model, version, outputs, request.id, params)
        response = await live()
        response.parameters.update(answered_by="live", materialized=status)
        return response

    def _from_table(
        self,
        spec: Materialized,
        model: str,
        version: str,
        request: InferRequest,
        ctx: RequestContext,
    ) -> tuple[str, dict[str, Array] | None]:
        keys = request_keys(spec, request, ctx)
        if keys is not None:
            by, values = "row_key", keys
            rows_in = {a.shape[0] if a.ndim else 1 for a in request.inputs.values()}
            if rows_in and rows_in != {len(keys)}:
                raise InvalidInputError(
                    f"parameter '{spec.key}' names {len(keys)} key(s) for {rows_in} input row(s)"
                )
        else:
            by, values = "input_hash", row_digests(request.inputs)
        if not values:
            return "miss", None
        rows = self.lookup(spec, model, by, values)
        found = [rows.get(v) for v in values]
        if any(row is None for row in found):
            return "miss", None
        current = [row for row in found if row is not None and str(row.version) == version]
        if len(current) != len(values):
            return "stale", None
        return "hit", decode_rows([row.outputs for row in current], request.outputs)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def request_keys(
    spec: Materialized, request: InferRequest, ctx: RequestContext
) -> list[str] | None:
    """The row keys a request names (None: look rows up by their inputs)."""
    if spec.key is None:
        return None
    value: Any = request.parameters.get(spec.key)
    if value is None:
        value = ctx.headers.get(spec.key.lower(), ctx.headers.get(spec.key))
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
