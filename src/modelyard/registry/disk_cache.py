"""The local disk tier of artifacts: RAM (model cache) -> local disk (this) -> remote store.

Artifacts fetched from a remote store (S3, ...) are kept under the registry's local cache
directory, one directory per version (``<root>/<model>/<version>-<digest>``, see
:func:`modelyard.registry.fetching.cached_path`), so a model evicted from RAM reloads from disk,
not from the network. Every reuse is checksum-verified by the fetch path.

The tier holds a byte budget: before a download, least recently used entries are removed until
the new one fits. "Used" is the entry directory's mtime, which every fetch sets, so several
processes sharing one directory agree on the order without talking to each other. An entry used
within ``grace_s`` is never removed: a process may be loading a runtime from it right now. The
budget may therefore be exceeded for a while when everything is that recent.

Removal renames the directory out of the way first (atomic), then deletes it, so a reader sees a
complete entry or none.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError

log = logging.getLogger(__name__)

_TRASH_PREFIX = ".evicted-"


@dataclass(frozen=True, slots=True)
class DiskEntry:
    """One cached version: its directory, size on disk, and last use (wall seconds)."""

    path: Path
    bytes: int
    last_used: float


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """A snapshot of the tier, for ``GET /v2/fleet/cache`` and ``modelyard cache``."""

    root: str
    budget_bytes: int | None
    bytes: int
    entries: int
    evictions: int


def choose_disk_evictions(
    entries: Sequence[DiskEntry],
    *,
    budget_bytes: int,
    incoming_bytes: int,
    now: float,
    grace_s: float,
    keep: Path | None = None,
) -> list[Path]:
    """Which entries to remove so that ``incoming_bytes`` more fit in ``budget_bytes``: least
    recently used first, skipping ``keep`` and entries used less than ``grace_s`` ago. May
    return fewer than needed (then the tier stays over budget until those age)."""
    total = sum(e.bytes for e in entries) + incoming_bytes
    victims: list[Path] = []
    for entry in sorted(entries, key=lambda e: (e.last_used, str(e.path))):
        if total <= budget_bytes:
            break
        if entry.path == keep or now - entry.last_used < grace_s:
            continue
        victims.append(entry.path)
        total -= entry.bytes
    return victims


class DiskCache:
    """The byte-budgeted local copy of remote artifacts under ``root``.

    ``budget_bytes=None`` keeps everything. Thread-safe; several processes may share ``root``.
    """

    def __init__(
        self,
        root: Path,
        budget_bytes: int | None,
        *,
        grace_s: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if budget_bytes is not None and (
            isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 0
        ):
            raise InvalidInputError(
                f"local_cache_bytes must be an int >= 0 or None, got {budget_bytes!r}"
            )
        if not grace_s >= 0:
            raise InvalidInputError(f"grace_s must be >= 0, got {grace_s!r}")
        self.root = root
        self.budget_bytes = budget_bytes
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._evictions = 0

    def touch(self, entry: Path) -> None:
        """Mark ``entry`` as just used (its directory mtime), for the LRU order."""
        now = self._clock.wall()
        try:
            os.utime(entry, (now, now))
        except OSError as exc:  # gone meanwhile (another process evicted it): nothing to mark
            log.debug("cannot mark %s as used: %s", entry, exc)

    def scan(self) -> list[DiskEntry]:
        """Every complete entry under ``root`` (temporary and evicted directories excluded)."""
        out: list[DiskEntry] = []
        for model_dir in _subdirs(self.root):
            for entry in _subdirs(model_dir):
                try:
                    last_used = entry.stat().st_mtime
                except OSError:
                    continue
                out.append(DiskEntry(entry, _tree_bytes(entry), last_used))
        return out

    def make_room(self, incoming_bytes: int, *, keep: Path | None = None) -> list[Path]:
        """Remove least recently used entries so ``incoming_bytes`` more fit the budget;
        returns the removed entries."""
        if self.budget_bytes is None:
            return []
        with self._lock:
            victims = choose_disk_evictions(
                self.scan(),
                budget_bytes=self.budget_bytes,
                incoming_bytes=incoming_bytes,
                now=self._clock.wall(),
                grace_s=self.grace_s,
                keep=keep,
            )
            removed = [path for path in victims if self._remove(path)]
            self._evictions += len(removed)
        for path in removed:
            log.info("local artifact cache: evicted %s", path)
        return removed

    def usage(self) -> DiskUsage:
        entries = self.scan()
        return DiskUsage(
            root=str(self.root),
            budget_bytes=self.budget_bytes,
            bytes=sum(e.bytes for e in entries),
            entries=len(entries),
            evictions=self._evictions,
        )

    def _remove(self, path: Path) -> bool:
        trash = path.parent / f"{_TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except OSError:  # already gone (another process evicted it)
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True


def _subdirs(path: Path) -> list[Path]:
    """Child directories not starting with a dot (those are downloads or removals in progress)."""
    try:
        with os.scandir(path) as it:
            return [
                Path(e.path)
                for e in it
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return []


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total
