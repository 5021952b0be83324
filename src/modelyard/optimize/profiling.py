"""``modelyard profile``: load a version in this process as the server does, time ``predict`` per
batch size, and (ONNX versions) break the time down per operator type with ORT's profiler.

What is timed is ``Runtime.predict`` on inputs already validated — model time, without the
batcher, the event loop or a network. Load time covers fetch (checksums) + load; the runtime's
own warm-up is timed apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.validation import validate_inputs
from modelyard.optimize.defaults import OP_RUNS, SAMPLE_ROWS, TOP_OPS
from modelyard.optimize.op_profile import OpBreakdown, profile_ops
from modelyard.optimize.samples import AUTO, Sample, batch_of, choose_sample
from modelyard.optimize.timing import BatchStats, LoopLimits, Timer, summarize, time_calls
from modelyard.registry.records import ModelVersion
from modelyard.runtime import Runtime, RuntimeOptions
from modelyard.runtimes import get_runtime_class
from modelyard.runtimes.onnx import MODEL_FILE

#: Called with what is being measured (e.g. "batch 8") and the fraction of it done, 0.0 first.
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ProfileReport:
    """Everything ``modelyard profile`` measured for one version."""

    ref: str
    runtime: str
    load_s: float
    warmup_s: float
    memory_bytes: int
    sample: str
    batches: tuple[BatchStats, ...]
    ops: OpBreakdown | None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.ref,
            "runtime": self.runtime,
            "load_s": self.load_s,
            "warmup_s": self.warmup_s,
            "memory_bytes": self.memory_bytes,
            "sample": self.sample,
            "batches": [b.as_dict() for b in self.batches],
            "ops": None if self.ops is None else self.ops.as_dict(),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ProfilePlan:
    """What to measure: batch sizes, loop limits, sample, and the op breakdown."""

    batch_sizes: Sequence[int] = (1, 8, 64)
    limits: LoopLimits = field(default_factory=LoopLimits)
    sample_mode: str = AUTO
    rows: int = SAMPLE_ROWS
    op_runs: int = OP_RUNS  # 0 = no op breakdown
    sample: Sample | None = None  # given by the user (wins over sample_mode / rows)
    top: int = TOP_OPS


def profile_loaded(
    runtime: Runtime,
    sample: Sample,
    plan: ProfilePlan,
    timer: Timer,
    progress: Progress | None = None,
) -> list[BatchStats]:
    """Time ``runtime.predict`` per batch size of ``plan`` on batches tiled from ``sample``."""
    signature = runtime.manifest.signature
    out: list[BatchStats] = []
    for size in plan.batch_sizes:
        inputs = validate_inputs(
            signature,
            batch_of(sample.inputs, signature, size),
            decode_bytes=not runtime.accepts_raw_bytes,
        )

        def call(inputs: dict[str, Any] = inputs) -> object:
            return runtime.predict(inputs)

        out.append(summarize(size, time_calls(call, plan.limits, timer, _phase(progress, size))))
    return out


def _phase(progress: Progress | None, size: int, what: str = "batch") -> Callable[[float], None]:
    """The fraction-done callback of one phase, started at 0.0."""
    label = f"{what} {size}"
    if progress is None:
        return lambda fraction: None
    progress(label, 0.0)
    return lambda fraction: progress(label, fraction)


def profile_version(
    version: ModelVersion,
    load: Callable[[ModelVersion], Runtime],
    options: RuntimeOptions,
    plan: ProfilePlan,
    *,
    timer: Timer,
    progress: Progress | None = None,
) -> ProfileReport:
    """Load ``version`` with ``load`` (as the server does; the engine imported beforehand, so
    the load time is this version's), warm it up, time it, unload it, then profile its
    operators in a separate session when it is ONNX."""
    sample = plan.sample or choose_sample(version.manifest, plan.sample_mode, rows=plan.rows)
    # Import the engine first: a process pays that once, not per version loaded.
    get_runtime_class(version.manifest.runtime)
    started = timer()
    runtime = load(version)
    try:
        loaded = timer()
        runtime.warmup()
        warmed = timer()
        batches = profile_loaded(runtime, sample, plan, timer, progress)
        memory = runtime.memory_bytes()
        local_dir = runtime.path
    finally:
        runtime.unload()
    ops: OpBreakdown | None = None
    notes: list[str] = []
    if version.manifest.runtime == "onnx" and plan.op_runs > 0:
        size = max(plan.batch_sizes)
        ops = profile_ops(
            local_dir / MODEL_FILE,
            batch_of(sample.inputs, version.manifest.signature, size),
            options,
            runs=plan.op_runs,
            top=plan.top,
            batch_size=size,
            progress=_phase(progress, size, "ORT profiler, batch"),
        )
    elif plan.op_runs > 0:
        notes.append(f"no operator breakdown: {version.manifest.runtime} is not an ONNX runtime")
    return ProfileReport(
        ref=version.ref,
        runtime=version.manifest.runtime,
        load_s=loaded - started,
        warmup_s=warmed - loaded,
        memory_bytes=memory,
        sample=sample.describe(),
        batches=tuple(batches),
        ops=ops,
        notes=tuple(notes),
    )
