"""Registry semantics on a real PostgreSQL (fresh schema per test)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import (
    ChecksumMismatchError,
    ModelNotFoundError,
    RegistryNotFoundError,
    UnavailableError,
)
from modelyard.registry import Registry
from modelyard.registry.migrations import MIGRATIONS, Migration, migrate
from tests.integration.conftest import RegistryFactory
from tests.unit.registry.fakes import FakeModel, install_fakes

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(monkeypatch)


@pytest.fixture
def pg_registry(pg_schema_url: str, tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(pg_schema_url, artifacts=str(tmp_path / "artifacts"))
    yield reg
    reg.close()


def test_versions_aliases_and_resolve(pg_registry: Registry) -> None:
    reg = pg_registry
    assert [reg.push(FakeModel(), name="m").version for _ in range(3)] == [1, 2, 3]
    assert reg.resolve("m").version == 3
    reg.set_alias("m", "production", 1)
    assert reg.resolve("m").version == 1
    reg.set_alias("m", "production", 2)
    assert reg.resolve("m", "production").version == 2
    assert reg.aliases("m") == {"production": 2}
    assert reg.resolve("m", "3").version == 3
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        reg.set_alias("m", "production", 9)
    with pytest.raises(ModelNotFoundError, match="no alias 'blue'"):
        reg.resolve("m", "blue")
    assert [(m.name, m.latest_version) for m in reg.list_models()] == [("m", 3)]


def test_metadata_round_trips_as_json(pg_registry: Registry) -> None:
    meta = {"metrics": {"auc": 0.93, "n": 10}, "git": "abc123", "tags": ["a", "b"], "ok": True}
    v = pg_registry.push(FakeModel(), name="m", metadata=meta, alias="candidate")
    assert pg_registry.get_version("m", 1).metadata == {**meta, "saved_by": "fake"}
    assert pg_registry.update_metadata("m", v.version, {"ok": False}).metadata["ok"] is False
    assert pg_registry.create_model("m", metadata={"team": "risk"}).metadata == {"team": "risk"}


def test_fetch_verifies_and_names_a_tampered_file(pg_registry: Registry) -> None:
    v = pg_registry.push(FakeModel(payload=b"weights"), name="m")
    path = pg_registry.fetch(v)
    (path / "weights.bin").write_bytes(b"WEIGHTS")
    with pytest.raises(ChecksumMismatchError, match=r"'weights\.bin' has sha256"):
        pg_registry.fetch(v)


def test_threads_share_a_registry(pg_registry: Registry) -> None:
    errors: list[BaseException] = []

    def push_some() -> None:
        try:
            for _ in range(3):
                pg_registry.push(FakeModel(), name="m")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=push_some) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in pg_registry.list_versions("m")] == list(range(1, 10))


def test_schema_is_migrated_once_and_versioned(pg_schema_url: str, tmp_path: Path) -> None:
    first = Registry(pg_schema_url, artifacts=str(tmp_path / "a"))
    second = Registry(pg_schema_url, artifacts=str(tmp_path / "a"))  # already migrated: no-op
    try:
        assert first.schema_version() == second.schema_version() == len(MIGRATIONS)
        step = Migration(len(MIGRATIONS) + 1, "extra", ("CREATE TABLE extra (id BIGINT)",))
        assert migrate(first.store, (*MIGRATIONS, step)) == step.version
        assert second.schema_version() == step.version
    finally:
        first.close()
        second.close()


def test_postgres_and_s3_together(make_registry: RegistryFactory) -> None:
    writer = make_registry()
    v = writer.push(FakeModel(payload=b"w" * 1000), name="m", alias="production")
    reader = make_registry(cache="reader-cache")
    resolved = reader.resolve("m")
    assert resolved.artifact_uri == v.artifact_uri
    assert (reader.fetch(resolved) / "weights.bin").read_bytes() == b"w" * 1000


def test_percent_literals_survive_placeholder_translation(pg_registry: Registry) -> None:
    with pg_registry.store.transaction(write=False) as tx:
        assert tx.execute("SELECT '5%', 'ab' = 'a' || ?", ("b",)).rows == [("5%", True)]
        assert tx.execute("SELECT '5%'").scalar() == "5%"


def test_a_dropped_connection_is_reported_then_replaced(
    pg_registry: Registry, pg_schema_url: str
) -> None:
    import psycopg

    pg_registry.push(FakeModel(), name="m")
    with pg_registry.store.transaction(write=False) as tx:
        pid = tx.execute("SELECT pg_backend_pid()").scalar()
    with psycopg.connect(pg_schema_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(UnavailableError, match="registry database error"):
        pg_registry.list_models()
    assert [m.name for m in pg_registry.list_models()] == ["m"]


def test_create_false_refuses_a_schema_without_registry_tables(
    pg_schema_url: str, tmp_path: Path
) -> None:
    artifacts = str(tmp_path / "artifacts")
    with pytest.raises(RegistryNotFoundError, match="has no registry tables"):
        Registry(pg_schema_url, artifacts=artifacts, create=False)
    Registry(pg_schema_url, artifacts=artifacts).close()
    Registry(pg_schema_url, artifacts=artifacts, create=False).close()


def test_cli_tables_show_the_registry_without_its_password(
    pg_registry: Registry, pg_schema_url: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from modelyard.cli import main

    pg_registry.push(FakeModel(), name="m")
    url = pg_schema_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@", 1)
    assert "s3cret" in url  # trust auth here: the password is ignored, the URL still works
    for command in (["models"], ["endpoint", "list"]):
        env = {"MODELYARD_ARTIFACTS": str(tmp_path / "artifacts")}
        result = CliRunner().invoke(main, [*command, "--registry", url], env=env)
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output and "postgres@" in result.output
