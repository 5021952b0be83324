"""The contract every runtime meets: save -> load -> warmup -> predict -> memory -> unload.

A :class:`Case` builds a tiny model plus the inputs to call it with and the outputs the original
model gives on them; :func:`check_contract` runs one case through the runtime chosen by detection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelyard.runtime import RuntimeOptions
from modelyard.runtimes import detect, get_runtime_class
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.unit.runtimes.models import manifest_for


@dataclass(frozen=True)
class Built:
    model: object
    inputs: dict[str, Array]  # a batch of N rows, as the dataplane would deliver it
    expected: Callable[[Mapping[str, Array]], dict[str, Array]]  # the original model's outputs
    sample: dict[str, Array] | None = None  # given to save() for signature inference


@dataclass(frozen=True)
class Case:
    id: str
    kind: str
    build: Callable[[Path], Built]
    atol: float = 1e-9


def rows(inputs: Mapping[str, Array], n: int) -> dict[str, Array]:
    return {k: v[:n] for k, v in inputs.items()}


def check_outputs(signature: Signature, got: Mapping[str, Array], n: int) -> None:
    """Names, datatypes and shapes exactly as the signature says."""
    assert list(got) == [o.name for o in signature.outputs]
    for spec in signature.outputs:
        arr = got[spec.name]
        assert isinstance(arr, np.ndarray), spec.name
        assert Datatype.from_numpy(arr.dtype) is spec.datatype, (spec.name, arr.dtype)
        assert spec.accepts_shape(arr.shape), (spec.name, arr.shape, spec.shape)
        assert arr.shape[0] == n, (spec.name, arr.shape)


def assert_same(spec: TensorSpec, got: Array, want: Array, atol: float) -> None:
    if spec.datatype is Datatype.BYTES:
        norm = [v.decode() if isinstance(v, bytes) else str(v) for v in got.reshape(-1)]
        ref = [v.decode() if isinstance(v, bytes) else str(v) for v in want.reshape(-1)]
        assert norm == ref, spec.name
    elif spec.datatype.numpy_dtype.kind in "iub":
        np.testing.assert_array_equal(got, np.asarray(want).reshape(got.shape), spec.name)
    else:
        np.testing.assert_allclose(got, np.asarray(want).reshape(got.shape), rtol=0, atol=atol)


def check_contract(case: Case, tmp_path: Path) -> None:
    built = case.build(tmp_path)
    cls = detect(built.model)
    assert cls.kind == case.kind
    directory = tmp_path / "version"
    saved = cls.save(built.model, directory, sample=built.sample)
    assert saved.signature is not None
    assert all(o.shape[0] == -1 for o in saved.signature.outputs if o.shape)

    one = rows(built.inputs, 1)
    for example in (None, one):  # warm-up from zeros of the signature, then from an example
        manifest = manifest_for(cls.kind, saved, directory, example=example)
        runtime = get_runtime_class(manifest.runtime)(directory, manifest, RuntimeOptions())
        runtime.load()
        runtime.warmup()
        assert runtime.memory_bytes() > 0
        n = len(next(iter(built.inputs.values())))
        for batch in (one, built.inputs):
            size = len(next(iter(batch.values())))
            got = runtime.predict(batch)
            check_outputs(saved.signature, got, size)
            want = built.expected(batch)
            for spec in saved.signature.outputs:
                assert_same(spec, got[spec.name], want[spec.name], case.atol)
        with ThreadPoolExecutor(4) as pool:  # predict is called from several threads at once
            results = list(pool.map(runtime.predict, [built.inputs] * 8))
        for res in results:
            check_outputs(saved.signature, res, n)
        runtime.unload()
