"""The inputs parity is checked on and profiles are timed with: the version's warm-up example, or
random rows shaped by its signature, and batches tiled from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modelyard.errors import InvalidInputError
from modelyard.manifest import Manifest
from modelyard.optimize.defaults import SAMPLE_ROWS
from modelyard.runtime import warmup_inputs
from modelyard.types import Array, Datatype, Signature

AUTO = "auto"
WARMUP = "warmup"
RANDOM = "random"
SAMPLE_MODES = (AUTO, WARMUP, RANDOM)
#: The size given to a variable dimension other than the batch axis (e.g. a token axis).
FREE_DIM = 8


@dataclass(frozen=True)
class Sample:
    """Named input arrays and where they came from."""

    inputs: dict[str, Array]
    source: str  # "warm-up example" | "random rows (seed N)"
    rows: int

    def describe(self) -> str:
        return f"{self.source}, {self.rows} row{'' if self.rows == 1 else 's'}"


def choose_sample(
    manifest: Manifest, mode: str = AUTO, *, rows: int = SAMPLE_ROWS, seed: int = 0
) -> Sample:
    """``auto``: the manifest's warm-up example when it has one, else ``rows`` random rows;
    ``warmup``: the example (an error without one); ``random``: random rows."""
    if mode not in SAMPLE_MODES:
        raise InvalidInputError(f"sample mode {mode!r} is not one of {', '.join(SAMPLE_MODES)}")
    if mode == WARMUP and not manifest.warmup:
        raise InvalidInputError("this version has no warm-up example; use --sample random")
    if mode != RANDOM and manifest.warmup:
        inputs = warmup_inputs(manifest)
        return Sample(inputs, "warm-up example", _rows(inputs, manifest.signature))
    if rows < 1:
        raise InvalidInputError(f"--rows must be >= 1, got {rows}")
    inputs = random_inputs(manifest.signature, rows, seed=seed)
    return Sample(inputs, f"random rows (seed {seed})", _rows(inputs, manifest.signature))


def given_sample(inputs: Mapping[str, Array], signature: Signature, source: str) -> Sample:
    """A sample the user supplied (e.g. real rows from a file), checked against ``signature``:
    every input present, nothing else, each cast to its datatype and of the same row count."""
    names = {spec.name for spec in signature.inputs}
    extra = sorted(set(inputs) - names)
    missing = sorted(names - set(inputs))
    if extra or missing:
        raise InvalidInputError(
            f"the sample's inputs do not match the signature (missing: {', '.join(missing) or '-'};"
            f" unexpected: {', '.join(extra) or '-'})"
        )
    out: dict[str, Array] = {}
    for spec in signature.inputs:
        arr = np.asarray(inputs[spec.name])
        if spec.datatype is not Datatype.BYTES:
            arr = arr.astype(spec.datatype.numpy_dtype, copy=False)
        if not spec.accepts_shape(arr.shape):
            raise InvalidInputError(
                f"sample input {spec.name!r} has shape {list(arr.shape)}, the signature wants "
                f"{list(spec.shape)}"
            )
        out[spec.name] = arr
    counts = {a.shape[0] for a in out.values() if a.ndim}
    if len(counts) > 1:
        raise InvalidInputError(f"the sample's inputs have different row counts: {sorted(counts)}")
    return Sample(out, source, _rows(out, signature))


def _rows(inputs: Mapping[str, Array], signature: Signature) -> int:
    for spec in signature.inputs:
        arr = inputs.get(spec.name)
        if arr is not None and spec.shape and spec.shape[0] == -1 and arr.ndim:
            return int(arr.shape[0])
    return 1


def random_inputs(signature: Signature, rows: int, *, seed: int = 0) -> dict[str, Array]:
    """Random values of each input's datatype: a leading -1 dim gets ``rows``, other -1 dims
    :data:`FREE_DIM`; floats ~ N(0, 1), integers 0 or 1 (valid as ids into any table of two
    rows or more, as masks and as token types), booleans, strings ``"sample i"``."""
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for spec in signature.inputs:
        shape = tuple(
            (rows if axis == 0 else FREE_DIM) if dim == -1 else dim
            for axis, dim in enumerate(spec.shape)
        )
        out[spec.name] = _random(spec.datatype, shape, rng)
    return out


def _random(datatype: Datatype, shape: tuple[int, ...], rng: np.random.Generator) -> Array:
    size = int(np.prod(shape, dtype=np.int64))
    if datatype is Datatype.BYTES:
        arr = np.empty(size, dtype=object)
        arr[:] = [f"sample {i}" for i in range(size)]
        return arr.reshape(shape)
    if datatype is Datatype.BOOL:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    dtype = datatype.numpy_dtype
    if dtype.kind in "iu":
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.standard_normal(size=shape).astype(dtype)


def batch_of(inputs: Mapping[str, Array], signature: Signature, size: int) -> dict[str, Array]:
    """A batch of ``size`` rows, the sample's rows repeated in order. Inputs without a batch axis
    (a leading -1 dim) only allow ``size`` 1, where they are given as they are."""
    out: dict[str, Array] = {}
    for spec in signature.inputs:
        arr = inputs[spec.name]
        batched = bool(spec.shape) and spec.shape[0] == -1 and arr.ndim >= 1 and len(arr) > 0
        if not batched:
            if size != 1:
                raise InvalidInputError(
                    f"input '{spec.name}' has no batch axis (shape {list(spec.shape)}); "
                    "profile it with --batch-sizes 1"
                )
            out[spec.name] = arr
            continue
        out[spec.name] = np.take(arr, np.arange(size) % len(arr), axis=0)
    return out
