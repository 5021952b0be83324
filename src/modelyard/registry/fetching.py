"""Getting a version's files onto local disk, every checksum verified.

A local artifact store is verified in place. A remote one is downloaded into the local cache
directory: first into a temporary sibling directory, verified there, then renamed into place, so a
cached copy is always complete and verified (a crash leaves only a temporary directory behind).
With a :class:`~modelyard.registry.disk_cache.DiskCache`, every use marks the copy as recently
used and a download first makes room under the tier's byte budget (least recently used first).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from modelyard.errors import ChecksumMismatchError, ModelYardError, UnavailableError
from modelyard.manifest import MANIFEST_FILE
from modelyard.registry.artifacts import ArtifactStore
from modelyard.registry.checksums import safe_relpath, verify_files
from modelyard.registry.disk_cache import DiskCache
from modelyard.registry.records import ModelVersion

log = logging.getLogger(__name__)


def fetch_version(
    store: ArtifactStore, version: ModelVersion, cache_dir: Path, disk: DiskCache | None = None
) -> Path:
    """A local directory holding ``version``'s files; raises ChecksumMismatchError naming a
    file that does not match its recorded sha256 (or is missing). ``disk`` (rooted at
    ``cache_dir``) keeps remote copies under a byte budget."""
    files = version.manifest.files
    for entry in files:
        safe_relpath(entry.path)
    if store.is_local:
        root = store.local_path(version.artifact_uri)
        verify_files(root, files, what=version.ref, reuse=True)
        return root
    final = cached_path(version, cache_dir)
    if final.is_dir():
        try:
            verify_files(final, files, what=f"{version.ref} (cached copy {final})", reuse=True)
            if disk is not None:
                disk.touch(final)
            return final
        except ChecksumMismatchError:
            log.warning("cached copy %s of %s is damaged; downloading again", final, version.ref)
            shutil.rmtree(final, ignore_errors=True)
    if disk is not None:
        disk.make_room(version.manifest.total_bytes(), keep=final)
    path = _download(store, version, final)
    if disk is not None:
        disk.touch(path)
    return path


def cached_path(version: ModelVersion, cache_dir: Path) -> Path:
    """Where the verified local copy of a remote ``version`` lives.

    The artifact URL is part of the name, so two registries sharing one cache directory (or a
    registry recreated with the same model name) cannot mix up their copies.
    """
    digest = hashlib.sha256(version.artifact_uri.encode()).hexdigest()[:16]
    return cache_dir / version.model / f"{version.version}-{digest}"


def _download(store: ArtifactStore, version: ModelVersion, final: Path) -> Path:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise UnavailableError(f"local cache {final.parent} is not writable: {exc}") from exc
    try:
        try:
            store.download(version.artifact_uri, [f.path for f in version.manifest.files], tmp)
        except FileNotFoundError as exc:
            raise ChecksumMismatchError(
                f"{version.ref}: a file is missing from {version.artifact_uri}: {exc}"
            ) from exc
        except ModelYardError:
            raise
        except Exception as exc:
            raise UnavailableError(
                f"{version.ref}: cannot download {version.artifact_uri}: {exc}"
            ) from exc
        verify_files(tmp, version.manifest.files, what=f"{version.ref} ({version.artifact_uri})")
        if not (tmp / MANIFEST_FILE).exists():
            (tmp / MANIFEST_FILE).write_text(version.manifest.to_json())
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another thread or process got there first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
