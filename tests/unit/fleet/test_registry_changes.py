"""Every registry write bumps the change counter in its own transaction; reads and failed
writes do not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.errors import ModelNotFoundError
from modelyard.registry import Registry
from tests.unit.registry.fakes import FakeModel


def bumps(registry: Registry, write: Callable[[], object]) -> int:
    before = registry.change_seq()
    write()
    return registry.change_seq() - before


def test_a_new_registry_starts_at_zero(registry: Registry) -> None:
    assert registry.change_seq() == 0


def test_each_write_bumps_once(registry: Registry) -> None:
    assert bumps(registry, lambda: registry.push(FakeModel(), name="m")) == 1
    assert bumps(registry, lambda: registry.push(FakeModel(), name="m", alias="production")) == 1
    assert bumps(registry, lambda: registry.set_alias("m", "candidate", 1)) == 1
    assert bumps(registry, lambda: registry.delete_alias("m", "candidate")) == 1
    assert bumps(registry, lambda: registry.update_metadata("m", 1, {"owner": "a"})) == 1
    assert bumps(registry, lambda: registry.update_model_metadata("m", {"team": "b"})) == 1
    assert bumps(registry, lambda: registry.create_model("n")) == 1


def test_reads_and_no_op_writes_do_not_bump(registry: Registry) -> None:
    registry.push(FakeModel(), name="m", alias="production")
    reads: list[Callable[[], object]] = [
        registry.list_models,
        lambda: registry.list_versions("m"),
        lambda: registry.resolve("m"),
        lambda: registry.aliases("m"),
        lambda: registry.fetch(registry.get_version("m", 1)),
        lambda: registry.create_model("m"),  # exists, no metadata: nothing changes
    ]
    for read in reads:
        assert bumps(registry, read) == 0


@pytest.mark.parametrize(
    "write",
    [
        lambda r: r.set_alias("m", "production", 9),
        lambda r: r.delete_alias("m", "nope"),
        lambda r: r.update_metadata("m", 9, {"a": 1}),
        lambda r: r.update_model_metadata("zzz", {"a": 1}),
    ],
)
def test_failed_writes_roll_back_the_bump(
    registry: Registry, write: Callable[[Registry], object]
) -> None:
    registry.push(FakeModel(), name="m")
    before = registry.change_seq()
    with pytest.raises(ModelNotFoundError):
        write(registry)
    assert registry.change_seq() == before


def test_another_client_of_the_same_registry_sees_the_bump(registry: Registry) -> None:
    other = Registry(registry.store.describe())
    try:
        seen = other.change_seq()
        registry.push(FakeModel(), name="m")
        assert other.change_seq() == seen + 1
    finally:
        other.close()
