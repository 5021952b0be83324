"""Two real processes push versions of one model at once: numbers stay distinct and contiguous,
and every artifact is intact."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import pytest

from modelyard.registry import Registry
from tests.unit.registry.fakes import FakeModel, install_fakes

pytestmark = pytest.mark.integration

PUSHES_PER_PROCESS = 6
MODEL = "shared"


def push_many(url: str, artifacts: str | None, tag: str, barrier: Any, results: Any) -> None:
    """Child process body: wait for the sibling, then push PUSHES_PER_PROCESS versions."""
    try:
        install_fakes()
        with Registry(url, artifacts=artifacts) as reg:
            barrier.wait(timeout=60)
            numbers = [
                reg.push(
                    FakeModel(payload=f"{tag}-{i}".encode()),
                    name=MODEL,
                    metadata={"tag": tag, "i": i},
                ).version
                for i in range(PUSHES_PER_PROCESS)
            ]
        results.put((tag, numbers, None))
    except BaseException:
        results.put((tag, [], traceback.format_exc()))


def _run_two_pushers(url: str, artifacts: str | None) -> dict[str, list[int]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=push_many, args=(url, artifacts, tag, barrier, results))
        for tag in ("a", "b")
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    errors = [err for _, _, err in outcomes if err]
    assert not errors, "\n".join(errors)
    return {tag: numbers for tag, numbers, _ in outcomes}


def _check(reg: Registry, by_tag: dict[str, list[int]]) -> None:
    total = 2 * PUSHES_PER_PROCESS
    assert sorted(by_tag["a"] + by_tag["b"]) == list(range(1, total + 1))
    for numbers in by_tag.values():
        assert numbers == sorted(numbers)  # each process saw its own pushes in order
    versions = reg.list_versions(MODEL)
    assert [v.version for v in versions] == list(range(1, total + 1))
    for v in versions:
        tag, i = v.metadata["tag"], v.metadata["i"]
        assert v.version == by_tag[tag][i]
        assert (reg.fetch(v) / "weights.bin").read_bytes() == f"{tag}-{i}".encode()
    assert len({v.artifact_uri for v in versions}) == total


def test_concurrent_push_sqlite(tmp_path: Path) -> None:
    url = str(tmp_path / "reg")
    Registry(url).close()  # migrated up front: the race under test is numbering, not migration
    by_tag = _run_two_pushers(url, None)
    with Registry(url) as reg:
        _check(reg, by_tag)


def test_concurrent_first_open_and_push_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh/registry.db"
    by_tag = _run_two_pushers(url, None)
    with Registry(url) as reg:
        _check(reg, by_tag)


def test_concurrent_push_postgres(pg_schema_url: str, tmp_path: Path) -> None:
    artifacts = str(tmp_path / "artifacts")
    by_tag = _run_two_pushers(pg_schema_url, artifacts)
    with Registry(pg_schema_url, artifacts=artifacts) as reg:
        _check(reg, by_tag)
