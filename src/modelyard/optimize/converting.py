"""``modelyard convert``: a scikit-learn / XGBoost / LightGBM version -> a new ONNX version of the
same model, pushed only when its outputs match the served version's on a sample."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.convert import to_onnx
from modelyard.core.validation import validate_inputs
from modelyard.errors import FailedPreconditionError
from modelyard.manifest import Manifest
from modelyard.optimize import estimators
from modelyard.optimize.defaults import CONVERT_ATOL, SAMPLE_ROWS
from modelyard.optimize.onnx_run import open_session, run_session
from modelyard.optimize.parity import Parity, compare
from modelyard.optimize.samples import AUTO, Sample, choose_sample
from modelyard.registry.records import ModelVersion
from modelyard.registry.registry import Registry
from modelyard.runtime import Runtime, RuntimeOptions, warmup_inputs
from modelyard.runtimes.onnx import signature_of
from modelyard.types import Array, Signature


class ParityError(FailedPreconditionError):
    """The candidate's outputs are not within the thresholds; nothing was pushed."""


@dataclass(frozen=True)
class Converted:
    """The outcome of :func:`convert_version`."""

    source: ModelVersion
    pushed: ModelVersion
    parity: Parity
    sample: Sample


def convert_version(
    registry: Registry,
    version: ModelVersion,
    options: RuntimeOptions,
    *,
    load: Callable[[ModelVersion], Runtime],
    atol: float = CONVERT_ATOL,
    alias: str | None = None,
    sample_mode: str = AUTO,
    rows: int = SAMPLE_ROWS,
    sample: Sample | None = None,
) -> Converted:
    """Convert ``version`` with :func:`modelyard.convert.to_onnx`, compare the ONNX graph with the
    served version (``load`` loads it the way the server does) on a sample, and push the graph as
    a new version when every label matches and floats differ by at most ``atol``. Raises
    :class:`ParityError` (nothing pushed) otherwise."""
    estimators.check_convertible(version)
    if sample is None:
        sample = choose_sample(version.manifest, sample_mode, rows=rows)
    reference = _served_outputs(load(version), sample)
    model = estimators.rebuild(version, registry.fetch(version), allow_pickle=options.allow_pickle)
    spec = version.manifest.signature.inputs[0]
    features = np.asarray(sample.inputs[spec.name], dtype=spec.datatype.numpy_dtype)
    result = to_onnx(model, features, name=version.model)
    candidate = run_session(open_session(result.to_bytes(), options), {spec.name: features})
    parity = compare(reference, candidate)
    failures = parity.failures(max_abs_diff=atol, min_agreement=1.0)
    if failures:
        raise ParityError(
            f"{version.ref} -> ONNX does not match the served version on the {sample.describe()}"
            f": {'; '.join(failures)}; nothing pushed"
        )
    new_signature, _ = signature_of(result.model)
    metadata: dict[str, Any] = {
        "converted_from": version.ref,
        "source_runtime": version.manifest.runtime,
        "estimator": result.metadata.get("converted_from"),
        "converter": result.metadata.get("converter"),
        "opsets": result.metadata.get("opsets"),
        "parity": {**parity.as_dict(), "sample": sample.describe(), "atol": atol},
    }
    pushed = registry.push(
        result.model,
        name=version.model,
        alias=alias,
        metadata=metadata,
        warmup=_warmup_for(version.manifest, new_signature),
    )
    return Converted(source=version, pushed=pushed, parity=parity, sample=sample)


def _served_outputs(runtime: Runtime, sample: Sample) -> dict[str, Array]:
    try:
        signature = runtime.manifest.signature
        inputs = validate_inputs(
            signature, sample.inputs, decode_bytes=not runtime.accepts_raw_bytes
        )
        return runtime.predict(inputs)
    finally:
        runtime.unload()


def _warmup_for(source: Manifest, signature: Signature) -> dict[str, Array] | None:
    """The source's warm-up example typed as the new graph's inputs (None when it has none)."""
    if not source.warmup:
        return None
    example = warmup_inputs(source)
    if {spec.name for spec in signature.inputs} != set(example):
        return None
    return {
        spec.name: np.asarray(example[spec.name], dtype=spec.datatype.numpy_dtype)
        for spec in signature.inputs
    }
