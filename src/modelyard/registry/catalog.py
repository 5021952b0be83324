"""The registry's SQL, written once for every engine (``?`` placeholders, portable types).

Functions take an open transaction, so callers compose several of them atomically (a new version
and its alias, for instance, in one commit).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from modelyard.errors import InvalidInputError, ModelNotFoundError
from modelyard.manifest import Manifest
from modelyard.registry.records import ModelInfo, ModelVersion
from modelyard.registry.store import Row, Tx

ToUri = Callable[[str], str]

_VERSION_COLUMNS = "model, version, artifact_uri, manifest, metadata, created_at"


def dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def check_metadata(metadata: Mapping[str, Any] | None, *, what: str = "metadata") -> dict[str, Any]:
    """``metadata`` as a plain JSON object; InvalidInputError when it cannot be one."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, got {type(metadata).__name__}")
    for key in metadata:
        if not isinstance(key, str):
            raise InvalidInputError(f"{what}: keys must be strings, got {key!r}")
    try:
        loaded: dict[str, Any] = json.loads(dumps(metadata))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{what} must be JSON-serialisable (finite numbers): {exc}"
        ) from exc
    return loaded


# ---- writes -----------------------------------------------------------------------------------
def ensure_model(tx: Tx, name: str, now: float, metadata: Mapping[str, Any] | None = None) -> bool:
    """Create model ``name`` unless it exists; True when this call created it."""
    result = tx.execute(
        "INSERT INTO models (name, created_at, last_version, metadata) VALUES (?, ?, 0, ?) "
        "ON CONFLICT (name) DO NOTHING",
        (name, now, dumps(metadata or {})),
    )
    return result.rowcount == 1


def insert_version(
    tx: Tx,
    name: str,
    artifact_ref: str,
    manifest: Manifest,
    metadata: Mapping[str, Any],
    now: float,
) -> int:
    """Number and insert the next version of ``name``; returns its number.

    The UPDATE … RETURNING locks the model row until commit, so concurrent pushes (threads or
    processes, SQLite or PostgreSQL) get distinct, contiguous numbers.
    """
    ensure_model(tx, name, now)
    number = tx.execute(
        "UPDATE models SET last_version = last_version + 1 WHERE name = ? RETURNING last_version",
        (name,),
    ).scalar()
    tx.execute(
        f"INSERT INTO versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (name, number, artifact_ref, manifest.model_dump_json(), dumps(metadata), now),
    )
    return int(number)


def set_alias(tx: Tx, name: str, alias: str, version: int, now: float) -> None:
    """Point ``alias`` at ``version`` in one statement: readers see the old or the new target."""
    if (
        tx.execute("SELECT 1 FROM versions WHERE model = ? AND version = ?", (name, version)).one()
        is None
    ):
        raise _missing_version(tx, name, version)
    tx.execute(
        "INSERT INTO aliases (model, alias, version, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (model, alias) DO UPDATE "
        "SET version = excluded.version, updated_at = excluded.updated_at",
        (name, alias, version, now),
    )


def delete_alias(tx: Tx, name: str, alias: str) -> None:
    result = tx.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (name, alias))
    if result.rowcount == 0:
        require_model(tx, name)
        raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}")


def merge_version_metadata(tx: Tx, name: str, version: int, update: Mapping[str, Any]) -> None:
    row = tx.execute(
        "SELECT metadata FROM versions WHERE model = ? AND version = ?", (name, version)
    ).one()
    if row is None:
        raise _missing_version(tx, name, version)
    merged = {**json.loads(row[0]), **update}
    tx.execute(
        "UPDATE versions SET metadata = ? WHERE model = ? AND version = ?",
        (dumps(merged), name, version),
    )


def merge_model_metadata(tx: Tx, name: str, update: Mapping[str, Any]) -> None:
    row = tx.execute("SELECT metadata FROM models WHERE name = ?", (name,)).one()
    if row is None:
        raise ModelNotFoundError(f"model {name!r} not found")
    merged = {**json.loads(row[0]), **update}
    tx.execute("UPDATE models SET metadata = ? WHERE name = ?", (dumps(merged), name))


CHANGES_CHANNEL = "modelyard_changes"


def bump_changes(tx: Tx) -> None:
    """Tell watchers the registry changed: ``registry_changes.seq`` goes up by one and, on
    PostgreSQL, a NOTIFY on :data:`CHANGES_CHANNEL` is sent when the transaction commits.

    Call it last in a write transaction: the counter row is then locked for the shortest time,
    and always after any model row (one lock order, so concurrent writers cannot deadlock).
    """
    tx.execute("UPDATE registry_changes SET seq = seq + 1 WHERE id = 1")
    if tx.dialect == "postgresql":
        tx.execute(f"NOTIFY {CHANGES_CHANNEL}")


def change_seq(tx: Tx) -> int:
    """The registry's change counter (see :func:`bump_changes`)."""
    value = tx.execute("SELECT seq FROM registry_changes WHERE id = 1").scalar()
    return 0 if value is None else int(value)


# ---- reads ------------------------------------------------------------------------------------
def require_model(tx: Tx, name: str) -> None:
    if tx.execute("SELECT 1 FROM models WHERE name = ?", (name,)).one() is None:
        raise ModelNotFoundError(f"model {name!r} not found")


def aliases(tx: Tx, name: str) -> dict[str, int]:
    rows = tx.execute(
        "SELECT alias, version FROM aliases WHERE model = ? ORDER BY alias", (name,)
    ).rows
    return {str(alias): int(version) for alias, version in rows}


def alias_target(tx: Tx, name: str, alias: str) -> int | None:
    value = tx.execute(
        "SELECT version FROM aliases WHERE model = ? AND alias = ?", (name, alias)
    ).scalar()
    return None if value is None else int(value)


def models(tx: Tx, name: str | None = None) -> list[ModelInfo]:
    where, params = ("WHERE m.name = ?", (name,)) if name is not None else ("", ())
    rows = tx.execute(
        "SELECT m.name, m.created_at, m.metadata, "
        "(SELECT MAX(v.version) FROM versions v WHERE v.model = m.name) "
        f"FROM models m {where} ORDER BY m.name",
        params,
    ).rows
    alias_rows = tx.execute(
        f"SELECT a.model, a.alias, a.version FROM aliases a JOIN models m ON m.name = a.model "
        f"{where} ORDER BY a.model, a.alias",
        params,
    ).rows
    by_model: dict[str, dict[str, int]] = {}
    for model, alias, version in alias_rows:
        by_model.setdefault(str(model), {})[str(alias)] = int(version)
    return [
        ModelInfo(
            name=str(n),
            created_at=float(created),
            latest_version=None if latest is None else int(latest),
            aliases=by_model.get(str(n), {}),
            metadata=json.loads(meta),
        )
        for n, created, meta, latest in rows
    ]


def version(tx: Tx, name: str, number: int, to_uri: ToUri) -> ModelVersion:
    row = tx.execute(
        f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND version = ?",
        (name, number),
    ).one()
    if row is None:
        raise _missing_version(tx, name, number)
    return _version(row, _aliases_by_version(tx, name), to_uri)


def newest_version(tx: Tx, name: str, to_uri: ToUri) -> ModelVersion:
    row = tx.execute(
        f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? ORDER BY version DESC LIMIT 1",
        (name,),
    ).one()
    if row is None:
        require_model(tx, name)
        raise ModelNotFoundError(f"model {name!r} has no versions")
    return _version(row, _aliases_by_version(tx, name), to_uri)


def versions(tx: Tx, name: str, to_uri: ToUri) -> list[ModelVersion]:
    rows = tx.execute(
        f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? ORDER BY version", (name,)
    ).rows
    if not rows:
        require_model(tx, name)
    by_version = _aliases_by_version(tx, name)
    return [_version(row, by_version, to_uri) for row in rows]


def _aliases_by_version(tx: Tx, name: str) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for alias, number in aliases(tx, name).items():
        out[number] = (*out.get(number, ()), alias)
    return out


def _version(row: Row, by_version: Mapping[int, tuple[str, ...]], to_uri: ToUri) -> ModelVersion:
    model, number, ref, manifest, metadata, created = row
    return ModelVersion(
        model=str(model),
        version=int(number),
        manifest=Manifest.from_json(manifest),
        artifact_uri=to_uri(str(ref)),
        created_at=float(created),
        metadata=json.loads(metadata),
        aliases=by_version.get(int(number), ()),
    )


def _missing_version(tx: Tx, name: str, number: int) -> ModelNotFoundError:
    require_model(tx, name)
    latest = tx.execute("SELECT MAX(version) FROM versions WHERE model = ?", (name,)).scalar()
    hint = f" (latest is {int(latest)})" if latest is not None else " (it has no versions)"
    return ModelNotFoundError(f"model {name!r} has no version {number}{hint}")
