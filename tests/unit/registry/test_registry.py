"""Registry semantics on SQLite + a local artifact directory."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    InvalidNameError,
    ModelNotFoundError,
)
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.unit.registry.fakes import FakeModel


def test_versions_are_numbered_per_model(registry: Registry) -> None:
    assert [registry.push(FakeModel(), name="a").version for _ in range(3)] == [1, 2, 3]
    assert registry.push(FakeModel(), name="b").version == 1
    assert [v.version for v in registry.list_versions("a")] == [1, 2, 3]
    assert registry.get_model("a").latest_version == 3


def test_push_returns_what_get_version_reads(registry: Registry, clock: FakeClock) -> None:
    pushed = registry.push(FakeModel(), name="m", metadata={"git": "abc"}, alias="candidate")
    read = registry.get_version("m", 1)
    assert read == pushed
    assert read.created_at == clock.wall()
    assert read.ref == "m:1"
    assert read.aliases == ("candidate",)
    assert read.metadata == {"git": "abc", "saved_by": "fake"}
    assert read.manifest.runtime == "fake"
    assert read.artifact_uri.startswith("file://")


def test_versions_pushed_from_threads_are_distinct_and_contiguous(registry: Registry) -> None:
    numbers: list[int] = []
    lock = threading.Lock()

    def push_some() -> None:
        for _ in range(5):
            v = registry.push(FakeModel(), name="shared")
            with lock:
                numbers.append(v.version)

    threads = [threading.Thread(target=push_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 21))


def test_alias_move_is_one_write_and_reads_follow(registry: Registry) -> None:
    for _ in range(2):
        registry.push(FakeModel(), name="m")
    registry.set_alias("m", "production", 1)
    assert registry.resolve("m").version == 1
    registry.set_alias("m", "production", 2)
    assert registry.aliases("m") == {"production": 2}
    assert registry.resolve("m", "production").version == 2
    assert registry.get_version("m", 2).aliases == ("production",)
    assert registry.get_version("m", 1).aliases == ()


def test_alias_to_missing_version_is_refused_and_leaves_alias(registry: Registry) -> None:
    registry.push(FakeModel(), name="m", alias="production")
    with pytest.raises(ModelNotFoundError, match=r"no version 9 .latest is 1"):
        registry.set_alias("m", "production", 9)
    assert registry.aliases("m") == {"production": 1}


def test_delete_alias(registry: Registry) -> None:
    registry.push(FakeModel(), name="m", alias="candidate")
    registry.delete_alias("m", "candidate")
    assert registry.aliases("m") == {}
    with pytest.raises(ModelNotFoundError, match=r"no alias 'candidate'"):
        registry.delete_alias("m", "candidate")


@pytest.mark.parametrize(("ref", "expected"), [(1, 1), ("2", 2), ("candidate", 1), (None, 2)])
def test_resolve_rules_without_production(
    registry: Registry, ref: str | int | None, expected: int
) -> None:
    registry.push(FakeModel(), name="m", alias="candidate")
    registry.push(FakeModel(), name="m")
    assert registry.resolve("m", ref).version == expected


def test_resolve_none_prefers_production_over_newest(registry: Registry) -> None:
    registry.push(FakeModel(), name="m", alias="production")
    registry.push(FakeModel(), name="m")
    assert registry.resolve("m").version == 1


@pytest.mark.parametrize(
    ("ref", "message"),
    [(5, "no version 5"), ("5", "no version 5"), ("blue", "no alias 'blue'")],
)
def test_resolve_misses_are_not_found(registry: Registry, ref: str | int, message: str) -> None:
    registry.push(FakeModel(), name="m")
    with pytest.raises(ModelNotFoundError, match=message):
        registry.resolve("m", ref)


def test_resolve_unknown_model(registry: Registry) -> None:
    with pytest.raises(ModelNotFoundError, match=r"model 'nope' not found"):
        registry.resolve("nope")
    with pytest.raises(ModelNotFoundError, match=r"model 'nope' not found"):
        registry.resolve("nope", "production")


def test_resolve_model_without_versions(registry: Registry) -> None:
    registry.create_model("empty")
    with pytest.raises(ModelNotFoundError, match=r"has no versions"):
        registry.resolve("empty")
    assert registry.get_model("empty").latest_version is None


@pytest.mark.parametrize("ref", [0, -1, True])
def test_resolve_bad_version_numbers(registry: Registry, ref: int) -> None:
    registry.push(FakeModel(), name="m")
    with pytest.raises(InvalidInputError, match=r"version"):
        registry.resolve("m", ref)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ""])
def test_path_traversal_names_are_refused_everywhere(registry: Registry, name: str) -> None:
    with pytest.raises(InvalidNameError):
        registry.push(FakeModel(), name=name)
    with pytest.raises(InvalidNameError):
        registry.resolve(name)
    with pytest.raises(InvalidNameError):
        registry.get_model(name)
    assert registry.list_models() == []


def test_invalid_alias_on_push_uploads_nothing(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match=r"alias"):
        registry.push(FakeModel(), name="m", alias="12")
    assert registry.list_models() == []
    assert list((tmp_path / "reg" / "artifacts").iterdir()) == []


def test_version_metadata_merges(registry: Registry) -> None:
    registry.push(FakeModel(), name="m", metadata={"metrics": {"auc": 0.9}, "git": "abc"})
    updated = registry.update_metadata("m", 1, {"metrics": {"auc": 0.91}, "owner": "risk"})
    expected = {"metrics": {"auc": 0.91}, "git": "abc", "owner": "risk", "saved_by": "fake"}
    assert updated.metadata == expected
    assert registry.get_version("m", 1).metadata == expected


def test_model_metadata(registry: Registry) -> None:
    registry.create_model("m", metadata={"team": "risk"})
    registry.push(FakeModel(), name="m")
    info = registry.update_model_metadata("m", {"tier": 1})
    assert info.metadata == {"team": "risk", "tier": 1}
    assert registry.create_model("m", metadata={"team": "fraud"}).metadata == {
        "team": "fraud",
        "tier": 1,
    }


@pytest.mark.parametrize(
    ("metadata", "message"),
    [({"x": object()}, "JSON-serialisable"), ({"x": float("nan")}, "JSON"), ({1: "a"}, "keys")],
)
def test_bad_metadata_is_invalid_input(registry: Registry, metadata: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInputError, match=message):
        registry.push(FakeModel(), name="m", metadata=metadata)
    assert registry.list_models() == []


def test_metadata_of_missing_things(registry: Registry) -> None:
    with pytest.raises(ModelNotFoundError):
        registry.update_metadata("m", 1, {"a": 1})
    with pytest.raises(ModelNotFoundError):
        registry.update_model_metadata("m", {"a": 1})
    registry.push(FakeModel(), name="m")
    with pytest.raises(ModelNotFoundError, match=r"no version 2"):
        registry.update_metadata("m", 2, {"a": 1})


def test_list_models(registry: Registry) -> None:
    registry.push(FakeModel(), name="b", alias="production")
    registry.push(FakeModel(), name="a")
    registry.push(FakeModel(), name="a", alias="candidate")
    infos = registry.list_models()
    assert [(m.name, m.latest_version, dict(m.aliases)) for m in infos] == [
        ("a", 2, {"candidate": 2}),
        ("b", 1, {"production": 1}),
    ]


def test_unknown_model_reads(registry: Registry) -> None:
    for call in (
        lambda: registry.get_model("x"),
        lambda: registry.list_versions("x"),
        lambda: registry.get_version("x", 1),
        lambda: registry.aliases("x"),
    ):
        with pytest.raises(ModelNotFoundError, match=r"'x' not found"):
            call()


def test_reopening_sees_the_same_registry(tmp_path: Path) -> None:
    with Registry(tmp_path / "r") as reg:
        reg.push(FakeModel(), name="m", alias="production")
    with Registry(tmp_path / "r") as reg:
        assert reg.resolve("m").version == 1
    assert (tmp_path / "r" / "registry.db").is_file()


def test_sqlite_url_puts_artifacts_next_to_the_database(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path}/db/reg.db") as reg:
        v = reg.push(FakeModel(), name="m")
        assert Path(reg.fetch(v)).is_relative_to(tmp_path / "db" / "artifacts")


def test_registry_directory_can_be_moved(tmp_path: Path) -> None:
    with Registry(tmp_path / "before") as reg:
        reg.push(FakeModel(payload=b"w1"), name="m")
    (tmp_path / "before").rename(tmp_path / "after")
    with Registry(tmp_path / "after") as reg:
        path = reg.fetch(reg.resolve("m"))
        assert (path / "weights.bin").read_bytes() == b"w1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@h/db", "artifacts= .* is required"),
        ("mysql://u@h/db", "artifacts= .* is required"),
        ("sqlite:///:memory:", "database file path"),
    ],
)
def test_bad_registry_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Registry(url)


def test_unsupported_scheme_with_artifacts(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"scheme 'mysql' is not supported"):
        Registry("mysql://u@h/db", artifacts=str(tmp_path / "a"))


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        registry=str(tmp_path / "reg"),
        local_cache_dir=str(tmp_path / "cache"),
        allow_pickle=True,
    )
    with Registry.from_settings(settings) as reg:
        assert reg.allow_pickle is True
        assert reg.cache_dir == tmp_path / "cache"
        reg.push(FakeModel(), name="m")
        assert reg.artifact_store.root == str((tmp_path / "reg" / "artifacts").resolve())


def test_closed_registry_refuses_work(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r")
    reg.close()
    with pytest.raises(FailedPreconditionError, match=r"closed"):
        reg.list_models()
