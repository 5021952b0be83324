"""verify_file(reuse=True): a local copy this process verified is not hashed again while it is
the same, unchanged file; any change (content, size, replacement) is hashed and caught."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from modelyard.errors import ChecksumMismatchError
from modelyard.manifest import FileEntry
from modelyard.registry import Registry, checksums
from tests.unit.registry.fakes import FakeModel

Hashes = Callable[[], int]


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> Hashes:
    """Counts sha256_file calls (the work reuse saves); the memo starts empty."""
    calls: list[Path] = []
    real = checksums.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(checksums, "sha256_file", counting)
    monkeypatch.setattr(checksums, "_VERIFIED", {})
    return lambda: len(calls)


def settle(path: Path, age_s: float = 60.0) -> None:
    """Backdates the file's mtime, as for a copy written a while ago."""
    then = time.time() - age_s
    os.utime(path, (then, then))


def replace_backdated(path: Path, data: bytes) -> None:
    """Another file (new inode) where the old one was, with an old mtime."""
    path.unlink()
    path.write_bytes(data)
    settle(path)


def write(root: Path, data: bytes) -> FileEntry:
    (root / "w.bin").write_bytes(data)
    return FileEntry(path="w.bin", sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def test_a_settled_verified_file_is_not_hashed_again(tmp_path: Path, hashes: Hashes) -> None:
    entry = write(tmp_path, b"weights")
    settle(tmp_path / "w.bin")
    for _ in range(3):
        checksums.verify_file(tmp_path, entry, what="m:1", reuse=True)
    assert hashes() == 1


def test_without_reuse_every_call_hashes(tmp_path: Path, hashes: Hashes) -> None:
    entry = write(tmp_path, b"weights")
    settle(tmp_path / "w.bin")
    for _ in range(3):
        checksums.verify_file(tmp_path, entry, what="m:1")
    assert hashes() == 3


def test_a_freshly_written_file_is_hashed_every_time(tmp_path: Path, hashes: Hashes) -> None:
    entry = write(tmp_path, b"weights")  # mtime = now: a same-tick rewrite could hide
    for _ in range(3):
        checksums.verify_file(tmp_path, entry, what="m:1", reuse=True)
    assert hashes() == 3


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: p.write_bytes(b"evil!!!"), id="rewritten in place, same size"),
        pytest.param(lambda p: replace_backdated(p, b"evil!!!"), id="replaced, backdated"),
    ],
)
def test_a_changed_file_is_hashed_and_caught(
    tmp_path: Path, hashes: Hashes, change: Callable[[Path], object]
) -> None:
    entry = write(tmp_path, b"weights")
    settle(tmp_path / "w.bin")
    checksums.verify_file(tmp_path, entry, what="m:1", reuse=True)
    change(tmp_path / "w.bin")
    with pytest.raises(ChecksumMismatchError, match=r"m:1: file 'w\.bin' has sha256"):
        checksums.verify_file(tmp_path, entry, what="m:1", reuse=True)
    assert hashes() == 2


def test_a_remembered_file_is_not_taken_for_another_checksum(
    tmp_path: Path, hashes: Hashes
) -> None:
    entry = write(tmp_path, b"weights")
    settle(tmp_path / "w.bin")
    checksums.verify_file(tmp_path, entry, what="m:1", reuse=True)
    other = FileEntry(path="w.bin", sha256="0" * 64, size=entry.size)
    with pytest.raises(ChecksumMismatchError, match="has sha256"):
        checksums.verify_file(tmp_path, other, what="m:2", reuse=True)


def test_fetch_reuses_the_verification_of_an_unchanged_copy(
    registry: Registry, hashes: Hashes
) -> None:
    v = registry.push(FakeModel(payload=b"w"), name="m")
    path = registry.fetch(v)
    for f in v.manifest.files:
        settle(path / f.path)
    before = hashes()
    registry.fetch(v)
    registry.fetch(v)
    assert hashes() - before == len(v.manifest.files)  # the first reuse hashes, then no more
