"""Inference pipelines (kind ``pipeline``): pre- and post-processing steps around a model.

A pipeline version holds its model(s) and step assets as files (``model.onnx``,
``tokenizer.json`` …) and lists its steps in ``runtime_options["steps"]``, e.g. a text
embedding model::

    [{"op": "tokenize", "file": "tokenizer.json", "input": "text", "max_length": 128},
     {"op": "onnx", "file": "model.onnx"},
     {"op": "mean_pool", "input": "last_hidden_state", "mask": "attention_mask"},
     {"op": "normalize"}]

or a tabular classifier ``[{"op": "scale", …}, {"op": "onnx", …}, {"op": "label_map", …}]``.
Every step runs on the whole batch inside one ``predict``, so the batcher coalesces requests
around the pre- and post-processing too. The version's signature is the outside one (e.g.
``text`` BYTES ``[-1]`` -> ``embedding`` FP32 ``[-1, 384]``); its outputs are picked by name
from the tensors the steps produced.

Push one with ``registry.push(Pipeline(steps=[…], files={…}, signature=…), name=…)``.
"""

from __future__ import annotations

import shutil
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelyard.core.batch_policy import length_bucket, padding_efficiency
from modelyard.errors import FailedPreconditionError, InferenceError, InvalidInputError
from modelyard.manifest import MANIFEST_FILE, Manifest
from modelyard.runtime import Runtime, RuntimeOptions, SavedModel
from modelyard.runtimes._common import engine_errors, first_line, measure_load
from modelyard.runtimes._registry import register
from modelyard.runtimes.steps import Step, Tokenize, dump_step, parse_step, relative_file
from modelyard.types import Array, Signature

STEPS_OPTION = "steps"
SMALLEST_BUCKET = 8
"""Token-length buckets start here: shorter sequences cost about the same to run."""


def parse_steps(value: object) -> list[Step]:
    """The steps of a JSON list; InvalidInputError naming ``steps[i].field`` when invalid."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise InvalidInputError("steps: a pipeline needs a non-empty JSON list of steps")
    return [parse_step(spec, i) for i, spec in enumerate(value)]


@dataclass(frozen=True)
class Pipeline:
    """An inference pipeline to push: steps, the files they read, and the outside signature.

    ``files`` maps a path inside the version (as the steps name it, e.g. ``"model.onnx"``) to
    the local file to copy there. ``signature`` is what clients see; it may instead be passed
    to ``Registry.push(signature=…)``.
    """

    steps: Sequence[Mapping[str, Any]]
    files: Mapping[str, str | Path] = field(default_factory=dict)
    signature: Signature | None = None


@register
class PipelineRuntime(Runtime):
    """Runs the steps of a :class:`Pipeline` version on each batch, in order."""

    kind: ClassVar[str] = "pipeline"
    accepts_raw_bytes: ClassVar[bool] = False

    def __init__(self, path: Path, manifest: Manifest, options: RuntimeOptions) -> None:
        super().__init__(path, manifest, options)
        self._steps: list[Step] = []
        self._tokenizer: Tokenize | None = None
        self._bytes = 1

    # ---- packaging -----------------------------------------------------------------------------
    @classmethod
    def can_save(cls, obj: object) -> bool:
        return isinstance(obj, Pipeline)

    @classmethod
    def save(
        cls, obj: object, directory: Path, *, sample: Mapping[str, Array] | None
    ) -> SavedModel:
        """Check the steps, copy the files they read, and record the steps in the manifest."""
        if not isinstance(obj, Pipeline):
            raise InvalidInputError(f"pipeline runtime: {type(obj).__qualname__} is no Pipeline")
        steps = parse_steps(obj.steps)
        needed = {f for step in steps for f in step.files()}
        missing = sorted(needed - set(obj.files))
        if missing:
            raise InvalidInputError(
                f"files: the steps read {missing}, which are not in the pipeline's files "
                f"(have: {sorted(obj.files)})"
            )
        directory.mkdir(parents=True, exist_ok=True)
        for rel, src in obj.files.items():
            try:
                relative_file(rel)
            except ValueError as exc:
                raise InvalidInputError(f"files: {exc}") from exc
            if rel == MANIFEST_FILE:
                raise InvalidInputError(f"files: {MANIFEST_FILE} is the manifest's own name")
            source = Path(src)
            if not source.is_file():
                raise InvalidInputError(f"files[{rel!r}]: {source} is not a file")
            dest = directory / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        return SavedModel(
            signature=obj.signature,
            runtime_options={STEPS_OPTION: [dump_step(s) for s in steps]},
            metadata={"steps": [s.op for s in steps]},
        )

    # ---- serving -------------------------------------------------------------------------------
    def load(self) -> None:
        try:
            steps = parse_steps(self.manifest.runtime_options.get(STEPS_OPTION))
        except InvalidInputError as exc:
            raise FailedPreconditionError(f"pipeline runtime_options.{exc.message}") from exc

        def open_all() -> list[Step]:
            for i, step in enumerate(steps):
                try:
                    step.load(self.path, self.options)
                except (InvalidInputError, FailedPreconditionError) as exc:
                    raise FailedPreconditionError(f"steps[{i}] ({step.op}): {exc}") from exc
                except Exception as exc:  # engines raise their own types from native code
                    raise FailedPreconditionError(
                        f"steps[{i}] ({step.op}): cannot load: {type(exc).__name__}: "
                        f"{first_line(exc)}"
                    ) from exc
            return steps

        self._steps, self._bytes = measure_load(open_all, self.manifest.total_bytes())
        # Buckets come from a tokenizer that reads a request input directly (not a tensor that
        # only an earlier step produces, which does not exist yet when the request queues).
        inputs = {spec.name for spec in self.manifest.signature.inputs}
        tokenizers = [s for s in self._steps if isinstance(s, Tokenize) and s.input in inputs]
        self._tokenizer = tokenizers[0] if tokenizers else None

    def predict(self, inputs: Mapping[str, Array]) -> dict[str, Array]:
        if not self._steps:
            raise InferenceError("pipeline runtime: predict() before load()")
        if inputs and all(a.ndim and a.shape[0] == 0 for a in inputs.values()):
            return self._empty_outputs()  # models often reject a zero-row batch; skip them
        tensors: dict[str, Array] = dict(inputs)
        for i, step in enumerate(self._steps):
            with engine_errors(f"pipeline steps[{i}] ({step.op})"):
                tensors.update(step.run(tensors))
        out: dict[str, Array] = {}
        for spec in self.manifest.signature.outputs:
            if spec.name not in tensors:
                raise InferenceError(
                    f"pipeline: output {spec.name!r} of the signature was not produced by any "
                    f"step (have: {', '.join(sorted(tensors))})"
                )
            out[spec.name] = tensors[spec.name]
        return out

    def _empty_outputs(self) -> dict[str, Array]:
        return {
            spec.name: np.empty(
                (0, *(max(d, 0) for d in spec.shape[1:])), dtype=spec.datatype.numpy_dtype
            )
            for spec in self.manifest.signature.outputs
        }

    def token_counts(self, inputs: Mapping[str, Array]) -> list[int] | None:
        """Tokens per row after truncation (None when the pipeline does not tokenize a request
        input)."""
        return self._tokenizer.token_counts(inputs) if self._tokenizer is not None else None

    def batch_bucket(self, inputs: Mapping[str, Array]) -> Hashable | None:
        """The token-length bucket of a request (its longest row), when the pipeline tokenizes:
        the batcher only lets requests of one bucket share a batch. Costs one tokenization."""
        counts = self.token_counts(inputs)
        if counts is None or self._tokenizer is None:
            return None
        return length_bucket(
            max(counts, default=0), smallest=SMALLEST_BUCKET, largest=self._tokenizer.max_length
        )

    @property
    def padding_counts(self) -> tuple[int, int]:
        """(real tokens, padded tokens) fed to the model since load."""
        return self._tokenizer.padding_counts() if self._tokenizer is not None else (0, 0)

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / padded tokens since load (1.0 when nothing is padded)."""
        return padding_efficiency(*self.padding_counts)

    def memory_bytes(self) -> int:
        return self._bytes

    def unload(self) -> None:
        self._steps = []
        self._tokenizer = None
