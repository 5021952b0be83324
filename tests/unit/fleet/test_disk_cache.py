"""The local disk tier: LRU under a byte budget (pure decision, then the mechanism on real
directories), and fetch() reusing, touching and evicting copies of a remote store."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError
from modelyard.registry import Registry
from modelyard.registry.disk_cache import DiskCache, DiskEntry, choose_disk_evictions
from tests.unit.registry.fakes import FakeModel

P = Path


def entry(name: str, size: int, used: float) -> DiskEntry:
    return DiskEntry(P(name), size, used)


@pytest.mark.parametrize(
    ("entries", "budget", "incoming", "keep", "expected"),
    [
        # fits: nothing to do
        ([entry("a", 10, 1), entry("b", 10, 2)], 30, 10, None, []),
        # least recently used first, only as many as needed
        ([entry("a", 10, 3), entry("b", 10, 1), entry("c", 10, 2)], 30, 10, None, ["b"]),
        ([entry("a", 10, 3), entry("b", 10, 1), entry("c", 10, 2)], 25, 10, None, ["b", "c"]),
        # the entry being fetched is never a victim
        ([entry("a", 10, 1), entry("b", 10, 2)], 10, 0, P("a"), ["b"]),
        # recently used entries (grace 50 s at now=100) are spared, even if over budget
        ([entry("a", 10, 60), entry("b", 10, 20)], 5, 0, None, ["b"]),
        ([entry("a", 10, 60), entry("b", 10, 70)], 5, 0, None, []),
        # budget 0 keeps nothing that can go
        ([entry("a", 1, 1), entry("b", 1, 2)], 0, 0, None, ["a", "b"]),
    ],
)
def test_choose_disk_evictions(
    entries: list[DiskEntry], budget: int, incoming: int, keep: Path | None, expected: list[str]
) -> None:
    victims = choose_disk_evictions(
        entries, budget_bytes=budget, incoming_bytes=incoming, now=100.0, grace_s=50.0, keep=keep
    )
    assert victims == [P(v) for v in expected]


def make_entry(root: Path, model: str, name: str, size: int, used: float) -> Path:
    path = root / model / name
    path.mkdir(parents=True)
    (path / "weights.bin").write_bytes(b"x" * size)
    os.utime(path, (used, used))
    return path


def test_make_room_removes_lru_directories_and_counts(tmp_path: Path) -> None:
    clock = FakeClock(wall_start=10_000.0)
    disk = DiskCache(tmp_path, 250, grace_s=60.0, clock=clock)
    old = make_entry(tmp_path, "a", "1-x", 100, 1000.0)
    mid = make_entry(tmp_path, "b", "1-y", 100, 2000.0)
    new = make_entry(tmp_path, "a", "2-z", 100, 3000.0)
    (tmp_path / "a" / ".2-tmp.abc").mkdir()  # a download in progress is not an entry
    assert {e.path for e in disk.scan()} == {old, mid, new}
    assert disk.make_room(0) == [old]
    assert disk.make_room(100, keep=mid) == [new]
    assert not old.exists() and not new.exists() and mid.exists()
    usage = disk.usage()
    assert (usage.bytes, usage.entries, usage.evictions, usage.budget_bytes) == (100, 1, 2, 250)
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".evicted-")]


def test_touch_moves_an_entry_to_the_back_of_the_line(tmp_path: Path) -> None:
    clock = FakeClock(wall_start=10_000.0)
    disk = DiskCache(tmp_path, 150, grace_s=0.0, clock=clock)
    a = make_entry(tmp_path, "a", "1-x", 100, 1000.0)
    b = make_entry(tmp_path, "b", "1-y", 100, 2000.0)
    disk.touch(a)
    assert disk.make_room(0) == [b]
    disk.touch(tmp_path / "gone")  # a vanished entry is not an error


def test_no_budget_keeps_everything(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path, None)
    make_entry(tmp_path, "a", "1-x", 100, 1000.0)
    assert disk.make_room(10**12) == []


@pytest.mark.parametrize("budget", [-1, 1.5, True])
def test_bad_budget_is_refused(tmp_path: Path, budget: object) -> None:
    with pytest.raises(InvalidInputError, match="local_cache_bytes"):
        DiskCache(tmp_path, budget)  # type: ignore[arg-type]


# ---- through Registry.fetch on a remote (in-memory fsspec) store ------------------------------
@pytest.fixture
def remote_root() -> Iterator[str]:
    root = f"memory://modelyard-fleet-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_fetch_keeps_the_disk_tier_under_budget_lru(tmp_path: Path, remote_root: str) -> None:
    clock = FakeClock(wall_start=50_000.0)
    payload = b"w" * 4000
    reg = Registry(
        tmp_path / "reg",
        artifacts=remote_root,
        local_cache_dir=tmp_path / "cache",
        local_cache_bytes=10_000,  # room for two versions (about 4.4 kB each), not three
        clock=clock,
    )
    try:
        a, b, c = (reg.push(FakeModel(payload=payload), name=n) for n in ("a", "b", "c"))
        reg.disk_cache.grace_s = 0.0
        pa = reg.fetch(a)
        clock.advance(1)
        pb = reg.fetch(b)
        clock.advance(1)
        assert reg.fetch(a) == pa  # reuse marks a as recently used ...
        clock.advance(1)
        pc = reg.fetch(c)  # ... so b is the one evicted for c
        assert pa.is_dir() and pc.is_dir() and not pb.exists()
        assert reg.disk_cache.usage().bytes <= 10_000
        downloads: list[str] = []
        real = reg.artifact_store.download

        def counting(uri: str, *args: object) -> None:
            downloads.append(uri)
            real(uri, *args)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reg.artifact_store, "download", counting)
            clock.advance(1)
            assert reg.fetch(a) == pa and reg.fetch(c) == pc
            assert downloads == []  # both served from disk
            clock.advance(1)
            assert (reg.fetch(b) / "weights.bin").read_bytes() == payload
            assert downloads == [b.artifact_uri]  # the evicted one came back from the store
    finally:
        reg.close()


def test_a_version_used_within_the_grace_period_is_not_evicted(
    tmp_path: Path, remote_root: str
) -> None:
    clock = FakeClock(wall_start=50_000.0)
    reg = Registry(
        tmp_path / "reg",
        artifacts=remote_root,
        local_cache_dir=tmp_path / "cache",
        local_cache_bytes=1,
        clock=clock,
    )
    try:
        a, b = (reg.push(FakeModel(payload=b"w" * 100), name=n) for n in ("a", "b"))
        pa = reg.fetch(a)
        pb = reg.fetch(b)  # a was fetched a moment ago: a process may be loading it
        assert pa.is_dir() and pb.is_dir()
        clock.advance(reg.disk_cache.grace_s + 1)
        reg.fetch(a)  # a download-free reuse never evicts
        assert pb.is_dir()
    finally:
        reg.close()
