"""The registry facade: models, versions, aliases and metadata, over a SQL store and an artifact store.

(Interface fixed first so other layers can code against it; the registry work fills the bodies.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.manifest import Manifest
from modelyard.types import Array, Signature


@dataclass(frozen=True)
class ModelInfo:
    name: str
    created_at: float
    latest_version: int | None
    aliases: Mapping[str, int] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a model."""

    model: str
    version: int
    manifest: Manifest
    artifact_uri: str
    created_at: float
    metadata: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


class Registry:
    """Public entry point: ``Registry("./.modelyard")`` or ``Registry("postgresql://…",
    artifacts="s3://bucket/prefix", storage_options={...})``."""

    def __init__(
        self,
        url: str | Path = "./.modelyard",
        *,
        artifacts: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        local_cache_dir: str | Path | None = None,
        allow_pickle: bool = False,
    ) -> None:
        raise NotImplementedError

    def push(
        self,
        obj_or_path: object,
        *,
        name: str,
        signature: Signature | None = None,
        metadata: Mapping[str, Any] | None = None,
        alias: str | None = None,
        sample: Mapping[str, Array] | Array | None = None,
        warmup: Mapping[str, Array] | None = None,
        batching: Mapping[str, int] | None = None,
        allow_pickle: bool | None = None,
    ) -> ModelVersion:
        raise NotImplementedError

    def list_models(self) -> list[ModelInfo]:
        raise NotImplementedError

    def get_model(self, name: str) -> ModelInfo:
        raise NotImplementedError

    def list_versions(self, name: str) -> list[ModelVersion]:
        raise NotImplementedError

    def get_version(self, name: str, version: int) -> ModelVersion:
        raise NotImplementedError

    def resolve(self, name: str, ref: str | int | None = None) -> ModelVersion:
        """``ref``: a version number (int or digits), an alias name, or None for alias
        ``production`` if set, else the newest version. Raises ModelNotFoundError."""
        raise NotImplementedError

    def set_alias(self, name: str, alias: str, version: int) -> None:
        raise NotImplementedError

    def delete_alias(self, name: str, alias: str) -> None:
        raise NotImplementedError

    def aliases(self, name: str) -> dict[str, int]:
        raise NotImplementedError

    def update_metadata(self, name: str, version: int, metadata: Mapping[str, Any]) -> ModelVersion:
        raise NotImplementedError

    def fetch(self, version: ModelVersion) -> Path:
        """A local directory holding the version's files, every checksum verified.
        Raises ChecksumMismatchError naming the file on a mismatch."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
