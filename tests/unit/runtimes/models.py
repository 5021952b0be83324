"""Tiny models and the manifest plumbing shared by the runtime tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from modelyard.manifest import FileEntry, Manifest
from modelyard.runtime import Runtime, RuntimeOptions, SavedModel, warmup_example
from modelyard.runtimes import get_runtime_class
from modelyard.types import Array, Signature

TEXTS = [
    "good service today",
    "bad service again",
    "great food here",
    "awful food there",
    "good food",
    "bad day",
]
SENTIMENT = ["pos", "neg", "pos", "neg", "pos", "neg"]


def iris_like(n: int = 90, seed: int = 0) -> tuple[Array, Array]:
    """Three well separated classes in four features, like iris."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    x = centers[y] + rng.normal(scale=0.3, size=(n, 4))
    return x, y


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_for(
    kind: str,
    saved: SavedModel,
    directory: Path,
    *,
    signature: Signature | None = None,
    example: dict[str, Array] | None = None,
) -> Manifest:
    """The manifest the registry would write for a saved version (files checksummed)."""
    files = tuple(
        FileEntry(path=p.relative_to(directory).as_posix(), sha256=sha256(p), size=p.stat().st_size)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    )
    return Manifest(
        runtime=kind,
        files=files,
        signature=signature or saved.signature or Signature(),
        runtime_options=saved.runtime_options,
        warmup=warmup_example(example) if example is not None else None,
    )


def save_and_load(
    obj: object,
    directory: Path,
    *,
    sample: dict[str, Array] | None = None,
    options: RuntimeOptions | None = None,
    kind: str | None = None,
) -> Runtime:
    """detect -> save -> manifest -> load, as the registry and model cache do."""
    from modelyard.runtimes import detect

    cls = get_runtime_class(kind) if kind else detect(obj)
    saved = cls.save(obj, directory, sample=sample)
    manifest = manifest_for(cls.kind, saved, directory)
    runtime = get_runtime_class(manifest.runtime)(directory, manifest, options or RuntimeOptions())
    runtime.load()
    return runtime


def strings(values: list[str], raw: bool = False) -> Array:
    """An object array of str (or of bytes, as delivered to runtimes taking raw bytes)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [v.encode() for v in values] if raw else values
    return out
