"""Materialised predictions on PostgreSQL: in the registry's own database (a PostgreSQL
registry) and in a separate one (``--db``): lookup hit, live fallback on a miss, stale rows of an
older version not served, an idempotent rerun."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.registry.registry import Registry
from modelyard.registry.store import Store
from modelyard.settings import Settings
from modelyard.traffic.materialized import db_store
from modelyard.types import Array
from tests.unit.jobs.materializekit import batch, push_linear, rows, run_job, serving, settings_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["pg-registry", "pg-db"])
def setup(
    request: pytest.FixtureRequest, pg_schema_url: str, tmp_path: Path
) -> Iterator[tuple[Settings, Store, dict[str, str]]]:
    """(settings, the store the rows go to, the route's materialized spec)."""
    if request.param == "pg-registry":
        artifacts = str(tmp_path / "artifacts")
        with Registry(pg_schema_url, artifacts=artifacts) as registry:
            push_linear(registry, tmp_path)
            yield settings_for(pg_schema_url, artifacts=artifacts), registry.store, {"table": "t"}
        return
    root = tmp_path / "registry"
    with Registry(root) as registry:
        push_linear(registry, tmp_path)
    store = db_store(pg_schema_url)
    try:
        yield settings_for(str(root)), store, {"table": "t", "db": pg_schema_url}
    finally:
        store.close()


def expected(*keys: int) -> Array:
    return batch(*keys).sum(axis=1, keepdims=True)


def test_hit_miss_and_stale(setup: tuple[Settings, Store, dict[str, str]], tmp_path: Path) -> None:
    settings, store, spec = setup
    assert run_job(settings, store, "t", range(8)).rows == 8
    assert run_job(settings, store, "t", range(8)).rows == 8  # idempotent: still 8 rows
    with store.transaction(write=False) as tx:
        assert tx.execute("SELECT COUNT(*) FROM t").scalar() == 8
    with serving(settings, spec) as ep:
        hit = ep.infer(batch(1, 6))
        assert (hit.parameters["answered_by"], hit.parameters["materialized"]) == ("table", "hit")
        np.testing.assert_allclose(hit.outputs["output"], expected(1, 6), rtol=1e-6)
        assert ep.calls.models == []
        miss = ep.infer(batch(42))
        assert (miss.parameters["answered_by"], miss.parameters["materialized"]) == ("live", "miss")
        np.testing.assert_allclose(miss.outputs["output"], expected(42), rtol=1e-6)
        with Registry(settings.registry, artifacts=settings.artifacts) as registry:
            push_linear(registry, tmp_path)  # production moves to version 2
        stale = ep.infer(batch(1))
        assert stale.parameters["materialized"] == "stale" and stale.model_version == "2"
        assert ep.calls.models == ["linear:1", "linear:2"]


def test_the_command_writes_into_postgresql(pg_schema_url: str, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with Registry(root) as registry:
        push_linear(registry, tmp_path)
    keys = tmp_path / "keys.json"
    keys.write_bytes(orjson.dumps(rows(range(30))))
    argv = [
        *("materialize", "linear@production", "--input", str(keys), "--table", "scores"),
        *("--db", pg_schema_url, "--registry", str(root)),
    ]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert "30 rows upserted into scores (postgresql://" in result.output
    store = db_store(pg_schema_url)
    try:
        with store.transaction(write=False) as tx:
            found = tx.execute(
                "SELECT model, version, COUNT(*) FROM scores GROUP BY model, version"
            )
        assert found.rows == [("linear", 1, 30)]
    finally:
        store.close()
