"""The artifact store: where the files of versions live, addressed by URL through fsspec.

A plain directory (or ``file://``) is the default; ``s3://bucket/prefix`` needs s3fs (extra
``s3``) and takes ``storage_options`` such as ``key``, ``secret`` and
``client_kwargs={"endpoint_url": …}``. Any other fsspec protocol (``gs://``, ``memory://``) works
when its package is installed.

Each upload goes under a fresh key ``<model>/<uuid>``; nothing ever writes into a key that a version
row points at, so readers never see a partial artifact.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from modelyard.errors import InvalidInputError, MissingDependencyError, install_hint

log = logging.getLogger(__name__)

_EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3")}


class ArtifactStore:
    """Files of versions under one root URL. Keys are POSIX paths relative to the root."""

    def __init__(self, url: str | Path, storage_options: Mapping[str, Any] | None = None) -> None:
        text = str(url)
        self.storage_options = dict(storage_options or {})
        if "://" not in text or text.startswith("file://"):
            root = Path(text.removeprefix("file://")).expanduser().resolve()
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InvalidInputError(
                    f"artifacts: cannot create directory {root}: {exc}"
                ) from exc
            self.fs: Any = LocalFileSystem(auto_mkdir=True)
            self.root = root.as_posix()
            self.is_local = True
        else:
            self.fs, root_path = _filesystem(text, self.storage_options)
            self.root = str(root_path).rstrip("/")
            self.is_local = False
        self.url = self.fs.unstrip_protocol(self.root) if self.is_local else text.rstrip("/")

    # ---- addressing ---------------------------------------------------------------------------
    def new_key(self, model: str) -> str:
        """A key no other upload uses (``model`` is an already validated name)."""
        return f"{model}/{uuid.uuid4().hex}"

    def uri(self, ref: str) -> str:
        """The full URL of a stored reference (a key, or already an absolute URL)."""
        if "://" in ref:
            return ref
        return str(self.fs.unstrip_protocol(self._path(ref)))

    def local_path(self, ref: str) -> Path:
        """The local directory of ``ref`` (local stores only)."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local artifact store")
        return Path(self._path(ref))

    def _path(self, ref: str) -> str:
        if "://" in ref:
            fs, path = _filesystem(ref, self.storage_options)
            if type(fs) is not type(self.fs):
                raise InvalidInputError(
                    f"artifact {ref!r} is outside the artifact store {self.url}"
                )
            return str(path).rstrip("/")
        return f"{self.root}/{ref.strip('/')}"

    # ---- transfer -----------------------------------------------------------------------------
    def upload(self, key: str, files: Mapping[str, Path], blobs: Mapping[str, bytes]) -> None:
        """Copy local ``files`` (relative path -> local file), then write ``blobs``, under key."""
        base = self._path(key)
        if files:
            rels = list(files)
            self.fs.put([str(files[r]) for r in rels], [f"{base}/{r}" for r in rels])
        for rel, data in blobs.items():
            self.fs.pipe_file(f"{base}/{rel}", data)

    def download(self, ref: str, files: Sequence[str], dest: Path) -> None:
        """Copy the named files of ``ref`` into the local directory ``dest``."""
        base = self._path(ref)
        self.fs.invalidate_cache(base)  # a listing cached earlier must not hide a changed object
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if files:
            self.fs.get([f"{base}/{r}" for r in files], [str(dest / r) for r in files])

    def read_bytes(self, ref: str, rel: str) -> bytes:
        return bytes(self.fs.cat_file(f"{self._path(ref)}/{rel}"))

    def delete(self, ref: str) -> None:
        """Remove an artifact, best effort (used to clean up a failed push)."""
        try:
            self.fs.rm(self._path(ref), recursive=True)
        except FileNotFoundError:
            pass
        except Exception:
            log.warning("could not remove artifact %s", self.uri(ref), exc_info=True)


def _filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    scheme = url.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as exc:
        if scheme in _EXTRAS:
            raise install_hint(*_EXTRAS[scheme]) from exc
        raise MissingDependencyError(
            f"artifact store {scheme}:// needs a package that is not installed: {exc}"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"artifact store URL {url!r}: {exc}") from exc
    return fs, str(path)
