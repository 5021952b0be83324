"""The registry facade: models, versions, aliases and metadata over a SQL and an artifact store.

* Metadata lives in SQL (:mod:`modelyard.registry.store`): SQLite embedded by default, PostgreSQL
  for many replicas. Artifacts live in an artifact store addressed by URL
  (:mod:`modelyard.registry.artifacts`): a local directory by default, ``s3://`` and others via
  fsspec.
* A push uploads the files under a fresh key first and only then inserts the version row, in the
  same transaction that numbers it, so a version never points at a partial artifact and version
  numbers are distinct and contiguous across threads and processes.
* Every file's sha256 is recorded at push and verified by :meth:`Registry.fetch`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ModelYardError,
    RegistryNotFoundError,
    UnavailableError,
)
from modelyard.manifest import MANIFEST_FILE
from modelyard.registry import catalog
from modelyard.registry.artifacts import ArtifactStore
from modelyard.registry.disk_cache import DiskCache
from modelyard.registry.fetching import fetch_version
from modelyard.registry.migrations import migrate, schema_version
from modelyard.registry.names import PRODUCTION, validate_alias, validate_name
from modelyard.registry.packaging import PushOptions, package
from modelyard.registry.records import ModelInfo, ModelVersion
from modelyard.registry.store import SqliteStore, Store, open_store
from modelyard.settings import Settings
from modelyard.types import Array, Signature

__all__ = ["ModelInfo", "ModelVersion", "Registry"]

DB_FILE = "registry.db"
#: The largest version number: what a 64-bit SQL integer column (SQLite, PostgreSQL) holds.
MAX_VERSION = 2**63 - 1


def s3_storage_options(settings: Settings) -> dict[str, Any]:
    """fsspec options for s3:// URLs from the settings' ``s3_*`` fields (endpoint, key, secret);
    empty means the AWS default chain. The artifact store and batch job inputs/outputs use them."""
    options: dict[str, Any] = {}
    if settings.s3_endpoint_url:
        options["client_kwargs"] = {"endpoint_url": settings.s3_endpoint_url}
    if settings.s3_key:
        options["key"] = settings.s3_key
    if settings.s3_secret:
        options["secret"] = settings.s3_secret
    return options


class Registry:
    """Public entry point: ``Registry("./.modelyard")`` or ``Registry("postgresql://…",
    artifacts="s3://bucket/prefix", storage_options={...})``.

    ``url`` is a directory (SQLite ``<dir>/registry.db``, artifacts in ``<dir>/artifacts``),
    ``sqlite:///path/to.db`` (artifacts next to it) or ``postgresql://…`` (``artifacts`` required).
    As with SQLAlchemy, ``sqlite:///rel/to.db`` is relative to the working directory and
    ``sqlite:////abs/to.db`` (four slashes) is absolute.
    Safe to share between threads; several processes may open the same registry at once.

    A registry that does not exist yet is created, unless ``create=False``: then opening raises
    :class:`~modelyard.errors.RegistryNotFoundError` and leaves nothing behind (for readers, so
    that a mistyped URL is not taken for an empty registry).
    """

    def __init__(
        self,
        url: str | Path = "./.modelyard",
        *,
        artifacts: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        local_cache_dir: str | Path | None = None,
        local_cache_bytes: int | None = None,
        allow_pickle: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        create: bool = True,
    ) -> None:
        text = str(url)
        local_dir = _local_dir(text)
        if not create:
            _require_local_db(text)
        if artifacts is None and local_dir is None:
            raise InvalidInputError(
                f"registry {text.split('://', 1)[0]}://…: artifacts= (an artifact store URL "
                "such as s3://bucket/prefix) is required with a database registry"
            )
        self.allow_pickle = allow_pickle
        self._clock = clock
        default_root = local_dir if local_dir is not None else Path.home() / ".cache" / "modelyard"
        self._artifacts = ArtifactStore(
            artifacts if artifacts is not None else default_root / "artifacts", storage_options
        )
        self.cache_dir = (
            Path(local_cache_dir).expanduser()
            if local_cache_dir is not None
            else default_root / "cache"
        )
        #: The local disk tier of remote artifacts (budget: ``local_cache_bytes``, None = all).
        self.disk_cache = DiskCache(self.cache_dir, local_cache_bytes, clock=clock)
        self._store: Store = (
            SqliteStore(default_root / DB_FILE) if "://" not in text else open_store(text)
        )
        try:
            if not create:
                _require_schema(self._store, text)
            migrate(self._store, clock=clock)
        except BaseException:
            self._store.close()
            raise

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK, create: bool = True
    ) -> Registry:
        """A registry configured by ``settings`` (registry, artifacts, s3_*, local_cache_dir,
        local_cache_bytes, allow_pickle); ``create`` as for the constructor."""
        options: dict[str, Any] = {}
        if settings.artifacts is not None and settings.artifacts.startswith(("s3://", "s3a://")):
            options = s3_storage_options(settings)
        return cls(
            settings.registry,
            artifacts=settings.artifacts,
            storage_options=options or None,
            local_cache_dir=settings.local_cache_dir,
            local_cache_bytes=settings.local_cache_bytes,
            allow_pickle=settings.allow_pickle,
            clock=clock,
            create=create,
        )

    # ---- properties ---------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        """The clock this registry stamps rows with (wall time is shared across hosts)."""
        return self._clock

    @property
    def store(self) -> Store:
        """The SQL store, for components that keep their own tables in the registry database."""
        return self._store

    @property
    def artifact_store(self) -> ArtifactStore:
        return self._artifacts

    def schema_version(self) -> int:
        return schema_version(self._store)

    def change_seq(self) -> int:
        """A counter every registry write increments (in the same transaction): watchers poll it
        to notice new versions, moved aliases and metadata changes with one cheap query."""
        with self._store.transaction(write=False) as tx:
            return catalog.change_seq(tx)

    # ---- writes -------------------------------------------------------------------------------
    def push(
        self,
        obj_or_path: object,
        *,
        name: str,
        signature: Signature | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        alias: str | None = None,
        sample: Mapping[str, Array] | Array | None = None,
        warmup: Mapping[str, Array] | None = None,
        batching: Mapping[str, int] | None = None,
        allow_pickle: bool | None = None,
    ) -> ModelVersion:
        """Package, upload and publish a new version of model ``name``; returns it.

        ``obj_or_path``: a model file path (``.onnx``, …), a fitted scikit-learn / XGBoost /
        LightGBM model, a ``PythonModel`` instance, or a directory holding ``modelyard.json``.
        ``signature`` wins over the one the runtime infers (from the model, or from ``sample``);
        one of them must exist. ``warmup`` (else the first row of ``sample``) becomes the warm-up
        example. ``batching`` sets ``max_batch_size`` / ``max_wait_us`` hints. ``alias`` is
        pointed at the new version in the same commit. Pickle/joblib files are refused unless
        ``allow_pickle`` (default: the registry's) is True.
        """
        validate_name(name)
        if alias is not None:
            validate_alias(alias)
        user_metadata = catalog.check_metadata(metadata)
        now = self._clock.wall()
        opts = PushOptions(
            signature=signature,
            sample=sample,
            warmup=warmup,
            batching=batching,
            allow_pickle=self.allow_pickle if allow_pickle is None else allow_pickle,
            created_at=now,
        )
        with tempfile.TemporaryDirectory(prefix="modelyard-push-") as staging:
            pkg = package(obj_or_path, Path(staging), opts)
            meta = catalog.check_metadata({**pkg.metadata, **user_metadata})
            key = self._artifacts.new_key(name)
            try:
                self._upload(key, pkg.files, pkg.manifest.to_json().encode())
                with self._store.transaction() as tx:
                    number = catalog.insert_version(tx, name, key, pkg.manifest, meta, now)
                    if alias is not None:
                        catalog.set_alias(tx, name, alias, number, now)
                    catalog.bump_changes(tx)
            except BaseException:
                self._artifacts.delete(key)
                raise
        return ModelVersion(
            model=name,
            version=number,
            manifest=pkg.manifest,
            artifact_uri=self._artifacts.uri(key),
            created_at=now,
            metadata=meta,
            aliases=(alias,) if alias is not None else (),
        )

    def _upload(self, key: str, files: Mapping[str, Path], manifest: bytes) -> None:
        try:
            # The manifest goes last: an artifact with modelyard.json has all its files.
            self._artifacts.upload(key, files, {MANIFEST_FILE: manifest})
        except ModelYardError:
            raise
        except Exception as exc:
            raise UnavailableError(
                f"upload to the artifact store {self._artifacts.url} failed: {exc}"
            ) from exc

    def create_model(self, name: str, *, metadata: Mapping[str, Any] | None = None) -> ModelInfo:
        """Create model ``name`` without versions (a push creates it too); no-op if it exists
        except that ``metadata`` is merged into the model's."""
        validate_name(name)
        meta = catalog.check_metadata(metadata)
        with self._store.transaction() as tx:
            created = catalog.ensure_model(tx, name, self._clock.wall(), meta)
            if not created and meta:
                catalog.merge_model_metadata(tx, name, meta)
            if created or meta:
                catalog.bump_changes(tx)
        return self.get_model(name)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (one atomic write; the version must exist)."""
        validate_name(name)
        validate_alias(alias)
        number = _version_number(version)
        with self._store.transaction() as tx:
            catalog.set_alias(tx, name, alias, number, self._clock.wall())
            catalog.bump_changes(tx)

    def delete_alias(self, name: str, alias: str) -> None:
        validate_name(name)
        validate_alias(alias)
        with self._store.transaction() as tx:
            catalog.delete_alias(tx, name, alias)
            catalog.bump_changes(tx)

    def update_metadata(self, name: str, version: int, metadata: Mapping[str, Any]) -> ModelVersion:
        """Merge ``metadata`` into the version's (top-level keys replace; files stay immutable)."""
        validate_name(name)
        number = _version_number(version)
        update = catalog.check_metadata(metadata)
        with self._store.transaction() as tx:
            catalog.merge_version_metadata(tx, name, number, update)
            catalog.bump_changes(tx)
            return catalog.version(tx, name, number, self._artifacts.uri)

    def update_model_metadata(self, name: str, metadata: Mapping[str, Any]) -> ModelInfo:
        """Merge ``metadata`` into the model's (top-level keys replace)."""
        validate_name(name)
        update = catalog.check_metadata(metadata)
        with self._store.transaction() as tx:
            catalog.merge_model_metadata(tx, name, update)
            catalog.bump_changes(tx)
        return self.get_model(name)

    # ---- reads --------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        with self._store.transaction(write=False) as tx:
            return catalog.models(tx)

    def get_model(self, name: str) -> ModelInfo:
        validate_name(name)
        with self._store.transaction(write=False) as tx:
            found = catalog.models(tx, name)
        if not found:
            raise ModelNotFoundError(f"model {name!r} not found")
        return found[0]

    def list_versions(self, name: str) -> list[ModelVersion]:
        validate_name(name)
        with self._store.transaction(write=False) as tx:
            return catalog.versions(tx, name, self._artifacts.uri)

    def get_version(self, name: str, version: int) -> ModelVersion:
        validate_name(name)
        number = _version_number(version)
        with self._store.transaction(write=False) as tx:
            return catalog.version(tx, name, number, self._artifacts.uri)

    def resolve(self, name: str, ref: str | int | None = None) -> ModelVersion:
        """``ref``: a version number (int or digits), an alias name, or None for alias
        ``production`` if set, else the newest version. Raises ModelNotFoundError."""
        validate_name(name)
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isascii() and ref.isdigit()):
            return self.get_version(name, _version_number(ref))
        alias = PRODUCTION if ref is None else validate_alias(ref)
        with self._store.transaction(write=False) as tx:
            target = catalog.alias_target(tx, name, alias)
            if target is not None:
                return catalog.version(tx, name, target, self._artifacts.uri)
            if ref is None:
                return catalog.newest_version(tx, name, self._artifacts.uri)
            catalog.require_model(tx, name)
        raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}")

    def aliases(self, name: str) -> dict[str, int]:
        validate_name(name)
        with self._store.transaction(write=False) as tx:
            found = catalog.aliases(tx, name)
            if not found:
                catalog.require_model(tx, name)
            return found

    def fetch(self, version: ModelVersion) -> Path:
        """A local directory holding the version's files, every checksum verified.
        Raises ChecksumMismatchError naming the file on a mismatch."""
        return fetch_version(self._artifacts, version, self.cache_dir, self.disk_cache)

    # ---- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self._store.describe()!r}, artifacts={self._artifacts.url!r})"


def _local_dir(url: str) -> Path | None:
    """The directory of an embedded registry (it holds the default artifacts and cache)."""
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).expanduser().parent
    return None


def _require_local_db(url: str) -> None:
    """Raise RegistryNotFoundError when the SQLite file of an embedded registry is missing
    (checked before anything creates directories or the file)."""
    if "://" not in url:
        db = Path(url).expanduser() / DB_FILE
    elif url.startswith("sqlite:///"):
        db = Path(url.removeprefix("sqlite:///")).expanduser()
    else:
        return
    if not db.is_file():
        where = "" if "://" not in url else f": no file {db.absolute()}"
        raise RegistryNotFoundError(f"no registry at {url}{where}")


def _require_schema(store: Store, url: str) -> None:
    """Raise RegistryNotFoundError when the database holds no registry schema yet."""
    with store.transaction(write=False) as tx:
        if tx.dialect == "postgresql":
            found = tx.execute("SELECT to_regclass(?)", ("schema_version",)).scalar()
        else:
            found = tx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                ("schema_version",),
            ).scalar()
    if found is None:
        raise RegistryNotFoundError(
            f"no registry at {store.describe()}: the database has no registry tables"
        )


def _version_number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInputError(f"version must be a number, got {value!r}")
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):  # isdigit alone admits "²"
            raise InvalidInputError(f"version must be a number, got {value!r}")
        value = int(value)
    if value < 1:
        raise InvalidInputError(f"version must be >= 1, got {value}")
    if value > MAX_VERSION:
        raise InvalidInputError(f"version must be <= {MAX_VERSION}, got {value}")
    return value
