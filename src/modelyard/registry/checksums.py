"""File checksums of a version: computed at push, verified at fetch.

Paths in a manifest are untrusted input (a pushed directory or a database row could be crafted),
so every one is checked to stay inside the version's root before it is joined to a local path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from modelyard.errors import ChecksumMismatchError, InvalidInputError
from modelyard.manifest import MANIFEST_FILE, FileEntry

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relpath(path: str) -> str:
    """``path`` when it is a plain relative POSIX path inside the version root."""
    pure = PurePosixPath(path)
    if (
        not path
        or "\\" in path
        or "\x00" in path
        or pure.is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
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


def verify_file(root: Path, entry: FileEntry, *, what: str) -> None:
    """Raise ChecksumMismatchError naming the file unless it matches ``entry``."""
    path = root / safe_relpath(entry.path)
    if path.is_symlink() or not path.is_file():
        raise ChecksumMismatchError(f"{what}: file {entry.path!r} is missing")
    size = path.stat().st_size
    if size != entry.size:
        raise ChecksumMismatchError(
            f"{what}: file {entry.path!r} has {size} bytes, expected {entry.size}"
        )
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ChecksumMismatchError(
            f"{what}: file {entry.path!r} has sha256 {actual}, expected {entry.sha256}"
        )


def verify_files(root: Path, files: Sequence[FileEntry], *, what: str) -> None:
    """Verify every file of a version under ``root`` (``what`` names the version in errors)."""
    for entry in files:
        verify_file(root, entry, what=what)
