"""What the registry hands out: read-only records of models and versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard.manifest import Manifest


@dataclass(frozen=True)
class ModelInfo:
    """A model family: its newest version number, its aliases and free-form metadata."""

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
