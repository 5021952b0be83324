"""``modelyard quantize``: ONNX Runtime *dynamic* quantisation of an ONNX version, pushed as a new
version only when its outputs stay within the thresholds of the original's on a sample.

Choice: ``onnxruntime.quantization.quantize_dynamic`` with int8 weights (``QuantType.QInt8``,
signed, symmetric); activations are quantised to uint8 at run time (the only activation type
dynamic mode supports), so no calibration data is needed. It rewrites the ops of ORT's
``IntegerOpsRegistry`` — MatMul with constant weights, Conv, Gather, Attention, LSTM,
EmbedLayerNormalization, Transpose — and Gemm, which dynamic mode first turns into MatMul + Add.
The ``ai.onnx.ml`` operators (LinearClassifier, TreeEnsemble…) stay float, so converted linear
models and trees have nothing to quantise and are refused. The optional ``quant_pre_process``
step is not run (on an MLP it changed the quantised size by about 1%); parity is the guard.
Static (calibrated, QDQ) quantisation, int4 and fp16 are out of scope.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from onnx import TensorProto

from modelyard.errors import FailedPreconditionError
from modelyard.optimize.converting import ParityError
from modelyard.optimize.defaults import QUANTIZE_MAX_ABS_DIFF, QUANTIZE_MIN_AGREEMENT, SAMPLE_ROWS
from modelyard.optimize.onnx_run import open_session, run_session
from modelyard.optimize.parity import Parity, compare
from modelyard.optimize.samples import AUTO, Sample, choose_sample
from modelyard.registry.records import ModelVersion
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions, warmup_inputs
from modelyard.runtimes.onnx import MODEL_FILE

_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


@dataclass(frozen=True)
class QuantizeOptions:
    """Knobs of ``quantize_dynamic`` this command exposes."""

    per_channel: bool = False
    reduce_range: bool = False  # 7-bit weights: for CPUs without VNNI, where u8s8 may saturate


@dataclass(frozen=True)
class Quantized:
    """The outcome of :func:`quantize_version`."""

    source: ModelVersion
    pushed: ModelVersion
    parity: Parity
    sample: Sample
    bytes_before: int
    bytes_after: int
    new_ops: dict[str, int]
    weights_quantized: int


def dedupe_opsets(model: onnx.ModelProto) -> int:
    """Keep one opset import per domain (the highest version; ``ai.onnx`` is ``""``). skl2onnx
    writes the default domain twice, which the quantiser refuses. Returns how many were dropped."""
    best: dict[str, int] = {}
    for imp in model.opset_import:
        domain = "" if imp.domain == "ai.onnx" else imp.domain
        best[domain] = max(best.get(domain, 0), imp.version)
    dropped = len(model.opset_import) - len(best)
    if dropped:
        del model.opset_import[:]
        model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in best.items())
    return dropped


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def replaced_weights(before: onnx.ModelProto, after: onnx.ModelProto) -> list[str]:
    """Float weights of ``before`` that ``after`` no longer holds: the quantiser replaced each
    with an 8-bit copy (plus a scale and a zero point)."""
    kept = {init.name for init in after.graph.initializer}
    return sorted(
        init.name
        for init in before.graph.initializer
        if init.data_type in _FLOATS and init.name not in kept
    )


def new_ops(before: onnx.ModelProto, after: onnx.ModelProto) -> dict[str, int]:
    """Operator types the quantiser added (e.g. MatMulInteger), with how many more there are."""
    grown = op_counts(after) - op_counts(before)
    return dict(sorted(grown.items()))


def quantize_file(src: Path, dst: Path, options: QuantizeOptions) -> onnx.ModelProto:
    """Quantise the model in ``src`` into ``dst`` (external data kept external); returns the
    source graph (opsets de-duplicated) for comparison."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_model(str(src), load_external_data=False)
    external = any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)
    if external:
        onnx.load_external_data_for_model(model, str(src.parent))
    dedupe_opsets(model)
    quiet = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        quantize_dynamic(
            model,
            dst,
            weight_type=QuantType.QInt8,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            use_external_data_format=external,
        )
    except Exception as exc:
        raise FailedPreconditionError(
            f"quantize_dynamic failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        root.removeFilter(quiet)
    return model


class _DropPreprocessHint(logging.Filter):
    """quantize_dynamic logs a hint to run quant_pre_process on the root logger every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def quantize_version(
    registry: Registry,
    version: ModelVersion,
    options: RuntimeOptions,
    *,
    quantize: QuantizeOptions | None = None,
    max_abs_diff: float = QUANTIZE_MAX_ABS_DIFF,
    min_agreement: float = QUANTIZE_MIN_AGREEMENT,
    alias: str | None = None,
    sample_mode: str = AUTO,
    rows: int = SAMPLE_ROWS,
    sample: Sample | None = None,
) -> Quantized:
    """Quantise ``version`` (an ``onnx`` version), compare with the original on a sample and
    push when within ``max_abs_diff`` / ``min_agreement``; ParityError (nothing pushed) if not,
    FailedPreconditionError when it is not ONNX or nothing in it can be quantised."""
    if version.manifest.runtime != "onnx":
        raise FailedPreconditionError(
            f"{version.ref} is a {version.manifest.runtime!r} version; quantize takes onnx "
            f"versions (convert it first: modelyard convert {version.ref})"
        )
    quantize = quantize or QuantizeOptions()
    if sample is None:
        sample = choose_sample(version.manifest, sample_mode, rows=rows)
    src = registry.fetch(version) / MODEL_FILE
    with tempfile.TemporaryDirectory(prefix="modelyard-quantize-") as tmp:
        dst = Path(tmp) / MODEL_FILE
        before = quantize_file(src, dst, quantize)
        after = onnx.load_model(str(dst), load_external_data=False)
        weights = len(replaced_weights(before, after))
        if weights == 0:
            raise FailedPreconditionError(
                f"{version.ref}: nothing to quantise (no MatMul, Gemm, Conv, Gather, Attention "
                "or LSTM with constant float weights: ai.onnx.ml operators such as "
                "LinearClassifier and TreeEnsemble stay float, and an already quantised model "
                "has none left); nothing pushed"
            )
        reference = run_session(open_session(src, options), sample.inputs)
        candidate = run_session(open_session(dst, options), sample.inputs)
        parity = compare(reference, candidate)
        failures = parity.failures(max_abs_diff=max_abs_diff, min_agreement=min_agreement)
        if failures:
            raise ParityError(
                f"{version.ref} quantised is not within the thresholds on the "
                f"{sample.describe()}: {'; '.join(failures)}; nothing pushed"
            )
        added = new_ops(before, after)
        bytes_before, bytes_after = version.manifest.total_bytes(), _dir_bytes(Path(tmp))
        metadata: dict[str, Any] = {
            "quantized_from": version.ref,
            "quantization": {
                "method": "onnxruntime.quantization.quantize_dynamic",
                "weight_type": "QInt8",
                "activation_type": "QUInt8 (dynamic)",
                "per_channel": quantize.per_channel,
                "reduce_range": quantize.reduce_range,
                "onnxruntime": ort.__version__,
                "weights_quantized": weights,
                "new_ops": added,
            },
            "size_bytes_before": bytes_before,
            "size_bytes_after": bytes_after,
            "parity": {
                **parity.as_dict(),
                "sample": sample.describe(),
                "max_abs_diff_allowed": max_abs_diff,
                "min_agreement": min_agreement,
            },
        }
        pushed = registry.push(
            dst,
            name=version.model,
            alias=alias,
            metadata=metadata,
            warmup=warmup_inputs(version.manifest) if version.manifest.warmup else None,
        )
    return Quantized(
        source=version,
        pushed=pushed,
        parity=parity,
        sample=sample,
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        new_ops=added,
        weights_quantized=weights,
    )
