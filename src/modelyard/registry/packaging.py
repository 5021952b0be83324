"""Turning what a user pushes into the files and manifest of a new version.

The runtimes package (``modelyard.runtimes``) knows how to save each kind of model; this module
decides the rest: pickle refusal, checksums, the signature (explicit, else inferred, else an
error), warm-up example, batching hints. Nothing here touches the artifact store or the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pydantic import ValidationError

from modelyard.errors import InvalidInputError, PickleRefusedError
from modelyard.manifest import MANIFEST_FILE, BatchingHints, FileEntry, Manifest
from modelyard.registry.checksums import safe_relpath, scan_dir, verify_files
from modelyard.runtime import Runtime, warmup_example
from modelyard.types import Array, Signature

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})
SAMPLE_INPUT = "input"
"""The input name a bare-array ``sample`` is given when the runtime is asked to save."""


def detect_runtime(obj: object) -> type[Runtime]:
    """The runtime class that packages ``obj`` (raises InvalidInputError if none can)."""
    from modelyard.runtimes import detect

    return detect(obj)


def runtime_class(kind: str) -> type[Runtime]:
    """The runtime class of ``kind`` (raises FailedPreconditionError for an unknown kind)."""
    from modelyard.runtimes import get_runtime_class

    return get_runtime_class(kind)


@dataclass(frozen=True)
class PushOptions:
    """The packaging arguments of ``Registry.push``."""

    signature: Signature | Mapping[str, Any] | None = None
    sample: Mapping[str, Array] | Array | None = None
    warmup: Mapping[str, Array] | None = None
    batching: Mapping[str, int] | None = None
    allow_pickle: bool = False
    created_at: float = 0.0


@dataclass(frozen=True)
class Package:
    """A version ready to upload: its manifest and the local files it lists."""

    manifest: Manifest
    files: dict[str, Path]
    metadata: dict[str, Any] = field(default_factory=dict)


def package(obj: object, staging: Path, opts: PushOptions) -> Package:
    """Package ``obj`` (a model file or directory path, or an in-memory model) for upload.

    In-memory models and model files are saved by their runtime into ``staging``; a directory
    that holds a ``modelyard.json`` is used in place after its checksums are re-verified.
    """
    if isinstance(obj, str | Path):
        path = Path(obj)
        if not path.exists():
            raise InvalidInputError(f"push: {path} does not exist")
        if path.is_dir():
            if not (path / MANIFEST_FILE).is_file():
                raise InvalidInputError(
                    f"push: directory {path} has no {MANIFEST_FILE}; push a model file "
                    "(.onnx, .skops, …), an in-memory model, or a directory with a manifest"
                )
            return _from_directory(path, opts)
        _refuse_pickle(path.name, opts.allow_pickle)
    cls = detect_runtime(obj)
    saved = cls.save(obj, staging, sample=_sample_map(opts.sample))
    files = scan_dir(staging)
    for entry in files:
        _refuse_pickle(entry.path, opts.allow_pickle)
    manifest = _manifest(
        cls.kind,
        files,
        saved.signature,
        dict(saved.runtime_options),
        BatchingHints(),
        opts,
        what=_describe(obj),
    )
    return Package(
        manifest=manifest,
        files={f.path: staging / f.path for f in files},
        metadata=dict(saved.metadata),
    )


def _from_directory(root: Path, opts: PushOptions) -> Package:
    manifest_path = root / MANIFEST_FILE
    try:
        found = Manifest.from_json(manifest_path.read_bytes())
    except ValidationError as exc:
        raise InvalidInputError(f"{manifest_path}: invalid manifest: {_first_error(exc)}") from exc
    runtime_class(found.runtime)
    if found.files:
        for entry in found.files:
            safe_relpath(entry.path)
        verify_files(root, found.files, what=str(root))
        files = found.files
    else:
        files = scan_dir(root)
    for entry in files:
        _refuse_pickle(entry.path, opts.allow_pickle)
    manifest = _manifest(
        found.runtime,
        files,
        found.signature if found.signature.inputs else None,
        dict(found.runtime_options),
        found.batching,
        opts,
        what=f"directory {root}",
        default_warmup=found.warmup,
    )
    return Package(manifest=manifest, files={f.path: root / f.path for f in files})


def _manifest(
    kind: str,
    files: tuple[FileEntry, ...],
    inferred: Signature | None,
    runtime_options: dict[str, Any],
    default_batching: BatchingHints,
    opts: PushOptions,
    *,
    what: str,
    default_warmup: dict[str, Any] | None = None,
) -> Manifest:
    signature = _signature(opts.signature) if opts.signature is not None else inferred
    if signature is None or not signature.inputs:
        raise InvalidInputError(f"cannot infer the signature of {what}; pass signature= or sample=")
    warmup = _warmup(signature, opts)
    return Manifest(
        runtime=kind,
        files=files,
        signature=signature,
        batching=_batching(default_batching, opts.batching),
        warmup=warmup if warmup is not None else default_warmup,
        runtime_options=runtime_options,
        created_at=opts.created_at,
    )


def _refuse_pickle(name: str, allow_pickle: bool) -> None:
    if not allow_pickle and PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES:
        raise PickleRefusedError(
            f"push: {name} is a pickle/joblib file, and loading it runs arbitrary code; pass "
            "allow_pickle=True (or set MODELYARD_ALLOW_PICKLE=true) only for models you trust",
            file=name,
        )


def _signature(value: Signature | Mapping[str, Any]) -> Signature:
    if isinstance(value, Signature):
        return value
    try:
        return Signature.model_validate(dict(value))
    except (ValidationError, TypeError, ValueError) as exc:
        detail = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
        raise InvalidInputError(f"signature: {detail}") from exc


def _batching(default: BatchingHints, overrides: Mapping[str, int] | None) -> BatchingHints:
    if not overrides:
        return default
    unknown = sorted(set(overrides) - set(BatchingHints.model_fields))
    if unknown:
        known = ", ".join(BatchingHints.model_fields)
        raise InvalidInputError(f"batching: {unknown[0]} is not a batching hint (known: {known})")
    try:
        return BatchingHints.model_validate({**default.model_dump(), **dict(overrides)})
    except ValidationError as exc:
        raise InvalidInputError(f"batching: {_first_error(exc)}") from exc


def _sample_map(sample: Mapping[str, Array] | Array | None) -> dict[str, Array] | None:
    if sample is None:
        return None
    if isinstance(sample, Mapping):
        for key in sample:
            if not isinstance(key, str):
                raise InvalidInputError(f"sample: input names must be strings, got {key!r}")
        return {k: np.asarray(v) for k, v in sample.items()}
    return {SAMPLE_INPUT: np.asarray(sample)}


def _warmup(signature: Signature, opts: PushOptions) -> dict[str, Any] | None:
    """The manifest's warm-up example: ``warmup`` as given (it must match the signature), else
    the first row of ``sample`` when the sample covers exactly the signature's inputs."""
    names = {spec.name for spec in signature.inputs}
    if opts.warmup is not None:
        arrays = {str(k): np.asarray(v) for k, v in opts.warmup.items()}
        if set(arrays) != names:
            raise InvalidInputError(
                f"warmup: inputs {sorted(arrays)} do not match the signature's {sorted(names)}"
            )
        return _encode("warmup", arrays)
    sample = _sample_map(opts.sample)
    if sample is None:
        return None
    if set(sample) == {SAMPLE_INPUT} and len(names) == 1:
        sample = {next(iter(names)): sample[SAMPLE_INPUT]}
    if set(sample) != names:
        return None  # the sample served inference of the signature; it is no example
    first_rows: dict[str, Array] = {}
    for spec in signature.inputs:
        arr = sample[spec.name]
        batched = bool(spec.shape) and spec.shape[0] == -1 and arr.ndim >= 1 and len(arr) > 1
        first_rows[spec.name] = arr[:1] if batched else arr
    return _encode("sample", first_rows)


def _encode(what: str, arrays: Mapping[str, Array]) -> dict[str, Any]:
    try:
        return warmup_example(arrays)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what}: cannot encode as an example: {exc}") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{loc}: {err.get('msg', 'invalid')}"


def _describe(obj: object) -> str:
    if isinstance(obj, str | Path):
        return f"{obj}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"
