"""The manifest of a model version: what it is, which runtime loads it, its files and signature.

A manifest is stored as ``modelyard.json`` at the root of a version's artifact and (a copy) in the
registry row. It is immutable once the version is published.
"""

from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from modelyard.types import Signature

MANIFEST_FILE = "modelyard.json"
MANIFEST_FORMAT = 1


def is_version_relpath(path: str) -> bool:
    """Whether ``path`` is a plain relative POSIX path that stays inside a version's root: not
    empty or absolute, no backslash or NUL, no empty, ``.`` or ``..`` part."""
    return not (
        not path
        or "\\" in path
        or "\x00" in path
        or PurePosixPath(path).is_absolute()
        or any(part in ("", ".", "..") for part in path.split("/"))
    )


class FileEntry(BaseModel):
    """One file of a version, with its sha256 recorded at push and verified at load."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="POSIX path relative to the version root")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class BatchingHints(BaseModel):
    """How the batcher may coalesce requests for this version (used by the performance issue)."""

    model_config = ConfigDict(frozen=True)

    max_batch_size: int = Field(default=1, ge=1, description="1 disables batching")
    max_wait_us: int = Field(default=0, ge=0)


class Manifest(BaseModel):
    """Everything needed to load and call a version, independent of where its files live."""

    model_config = ConfigDict(frozen=True)

    format: int = MANIFEST_FORMAT
    runtime: str = Field(description="runtime kind: onnx, sklearn, xgboost, lightgbm, python")
    files: tuple[FileEntry, ...] = ()
    signature: Signature = Signature()
    batching: BatchingHints = BatchingHints()
    warmup: dict[str, Any] | None = Field(
        default=None,
        description="warm-up example: input name -> {'datatype', 'shape', 'data'} (flat list)",
    )
    runtime_options: dict[str, Any] = Field(
        default_factory=dict, description="runtime-specific load options (e.g. python class path)"
    )
    created_at: float = Field(default_factory=time.time)

    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.model_validate_json(text)
