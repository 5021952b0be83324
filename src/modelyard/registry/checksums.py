"""File checksums of a version: computed at push, verified at fetch.

Paths in a manifest are untrusted input (a pushed directory or a database row could be crafted),
so every one is checked to stay inside the version's root before it is joined to a local path.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from modelyard.errors import ChecksumMismatchError, InvalidInputError
from modelyard.manifest import MANIFEST_FILE, FileEntry, is_version_relpath

_CHUNK = 1 << 20

# Files this process hashed and found matching, by identity: (device, inode, size, mtime_ns) ->
# the sha256 they matched. See verify_file(reuse=True).
_VERIFIED: dict[tuple[int, int, int, int], str] = {}
_VERIFIED_LOCK = threading.Lock()
_VERIFIED_MAX = 65_536
# A file is remembered only once its mtime is this much older than the hash: a write lands in a
# later timestamp than that only if timestamps are at least this fine (some filesystems keep
# 1-2 s; Linux's in-kernel clock ticks every few ms), so any later write changes the mtime.
_SETTLED_NS = 2_000_000_000


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relpath(path: str) -> str:
    """``path`` when it is a plain relative POSIX path inside the version root."""
    if not is_version_relpath(path):
        raise InvalidInputError(f"manifest file path {path!r} must be relative and stay inside")
    return path


def scan_dir(root: Path, *, exclude: Iterable[str] = (MANIFEST_FILE,)) -> tuple[FileEntry, ...]:
    """Every regular file under ``root`` (sorted, POSIX paths), with size and sha256."""
    skip = set(exclude)
    entries: list[FileEntry] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise InvalidInputError(f"{root}: {rel!r} is a symlink; copy the file instead")
        if not path.is_file() or rel in skip:
            continue
        entries.append(FileEntry(path=rel, sha256=sha256_file(path), size=path.stat().st_size))
    return tuple(entries)


def verify_file(root: Path, entry: FileEntry, *, what: str, reuse: bool = False) -> None:
    """Raise ChecksumMismatchError naming the file unless it matches ``entry``.

    ``reuse=True`` skips hashing a file that this process already hashed and found matching
    ``entry.sha256``, when it is still the same file, unchanged: same device, inode, size and
    modification time (ns). This is for re-reading a local copy again and again (a model
    evicted from RAM reloads from it): the first uses still hash every byte, and a file is
    remembered only when it was last written at least ``_SETTLED_NS`` before it was hashed, so
    a later write cannot share its timestamp. What it lets through is a file rewritten in place
    with its old size and mtime put back on purpose, or bits rotting on disk while the process
    runs; a file replaced or edited by ordinary means gets a new inode or mtime and is hashed.
    """
    path = root / safe_relpath(entry.path)
    if path.is_symlink() or not path.is_file():
        raise ChecksumMismatchError(f"{what}: file {entry.path!r} is missing")
    st = path.stat()
    size = st.st_size
    if size != entry.size:
        raise ChecksumMismatchError(
            f"{what}: file {entry.path!r} has {size} bytes, expected {entry.size}"
        )
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if reuse and _VERIFIED.get(identity) == entry.sha256:
        return
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ChecksumMismatchError(
            f"{what}: file {entry.path!r} has sha256 {actual}, expected {entry.sha256}"
        )
    settled = time.time_ns() - st.st_mtime_ns >= _SETTLED_NS
    if settled and os.stat(path).st_mtime_ns == st.st_mtime_ns:  # and not written meanwhile
        with _VERIFIED_LOCK:
            if len(_VERIFIED) >= _VERIFIED_MAX:
                _VERIFIED.clear()
            _VERIFIED[identity] = actual


def verify_files(root: Path, files: Sequence[FileEntry], *, what: str, reuse: bool = False) -> None:
    """Verify every file of a version under ``root`` (``what`` names the version in errors;
    ``reuse``: see :func:`verify_file`)."""
    for entry in files:
        verify_file(root, entry, what=what, reuse=reuse)
