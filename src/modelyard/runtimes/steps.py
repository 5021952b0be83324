"""The steps of an inference pipeline, and their registry by op name.

A step is a small pydantic model: its fields are the step's JSON configuration (as stored in the
manifest's ``runtime_options["steps"]``), validated strictly so that a typo names the field. At
load a step opens its files (a tokenizer, an ONNX graph); at predict it maps the pipeline's
named tensors to new or replaced named tensors, always on the whole batch.

Engines are imported at load, not here: importing this module costs numpy and pydantic only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from modelyard.errors import InferenceError, InvalidInputError, MissingDependencyError
from modelyard.manifest import is_version_relpath
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes._common import to_strings
from modelyard.types import Array

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

Name = Annotated[str, Field(min_length=1, max_length=256)]
"""A tensor name in the pipeline's namespace (inputs of the request, outputs of steps)."""


class Step(BaseModel):
    """Base class of pipeline steps; subclasses register with :func:`register_step`.

    Subclasses declare their configuration as pydantic fields, set ``op`` (the name used in the
    manifest), and implement :meth:`run`. Override :meth:`files` when the step reads files from
    the version and :meth:`load` to open them. ``run`` is called from several threads at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: ClassVar[str] = ""

    def files(self) -> tuple[str, ...]:
        """Paths (relative to the version root) this step reads at load."""
        return ()

    def load(self, root: Path, options: RuntimeOptions) -> None:
        """Open the step's files under ``root``. Called once, before any :meth:`run`."""

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        """The tensors this step produces (new names, or replacements) from the batch so far."""
        raise NotImplementedError(f"step {self.op!r} must implement run()")


StepT = TypeVar("StepT", bound=type[Step])
_STEPS: dict[str, type[Step]] = {}


def register_step(cls: StepT) -> StepT:
    """Make ``cls`` the step of ``cls.op`` (a class decorator); a later registration wins."""
    if not cls.op:
        raise InvalidInputError(f"register_step: {cls.__qualname__} must set the class var op")
    _STEPS[cls.op] = cls
    return cls


def step_ops() -> list[str]:
    return sorted(_STEPS)


def parse_step(spec: object, index: int) -> Step:
    """The step described by one JSON object; InvalidInputError naming ``steps[i].field``."""
    where = f"steps[{index}]"
    if not isinstance(spec, Mapping):
        raise InvalidInputError(f"{where}: a step is a JSON object, got {type(spec).__name__}")
    op = spec.get("op")
    cls = _STEPS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise InvalidInputError(f"{where}.op: {op!r} is not a step op (known: {step_ops()})")
    try:
        return cls.model_validate({k: v for k, v in spec.items() if k != "op"})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "value"
        raise InvalidInputError(f"{where}.{loc} ({op}): {err.get('msg', 'invalid')}") from exc


def dump_step(step: Step) -> dict[str, Any]:
    """The step's full JSON configuration (defaults filled in), as stored in the manifest."""
    return {"op": step.op, **step.model_dump(mode="json")}


def tensor(tensors: Mapping[str, Array], name: str, step: str) -> Array:
    """The tensor a step reads; a clear error naming it and the step when it is missing."""
    try:
        return tensors[name]
    except KeyError:
        raise InvalidInputError(
            f"step {step!r} reads tensor {name!r}, which is not there "
            f"(have: {', '.join(sorted(tensors))})"
        ) from None


def relative_file(value: str) -> str:
    """``value`` when it is a plain relative POSIX path inside the version (else ValueError)."""
    if not is_version_relpath(value):
        raise ValueError(f"{value!r} must be a relative path inside the version")
    return value


RelPath = Annotated[str, AfterValidator(relative_file)]


def _require(module: str, pip: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install {pip}"
        ) from exc


# ---- text ------------------------------------------------------------------------------------
@register_step
class Tokenize(Step):
    """Text (BYTES/str, one per row) -> ``input_ids``, ``attention_mask`` (and
    ``token_type_ids``), int64 ``[batch, longest]``, using a Hugging Face ``tokenizer.json``.

    Rows are padded to the longest row of the batch, so grouping rows of similar length into a
    batch (see :meth:`token_counts` and the batcher's length buckets) keeps the padding small.
    """

    op: ClassVar[str] = "tokenize"
    file: RelPath = "tokenizer.json"
    input: Name = "text"
    max_length: int = Field(default=128, ge=1, le=65536)
    token_type_ids: bool = True
    _tokenizer: tokenizers.Tokenizer | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _real: int = PrivateAttr(default=0)
    _padded: int = PrivateAttr(default=0)

    def files(self) -> tuple[str, ...]:
        return (self.file,)

    def load(self, root: Path, options: RuntimeOptions) -> None:
        module = _require("tokenizers", "tokenizers")
        tok = module.Tokenizer.from_file(str(root / self.file))
        # The file may pin padding to a fixed length (e.g. 128); pad per batch instead.
        tok.no_padding()
        tok.enable_truncation(max_length=self.max_length)
        self._tokenizer = tok

    def texts(self, tensors: Mapping[str, Array]) -> list[str]:
        """The batch's texts, one per row (shape ``[n]`` or ``[n, 1]``)."""
        arr = tensor(tensors, self.input, self.op)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise InvalidInputError(
                f"input {self.input!r}: the tokenizer takes one text per row (shape [n]), "
                f"got shape {list(arr.shape)}"
            )
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.tolist()]
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"input {self.input!r}: not valid UTF-8 ({exc})") from exc

    def token_counts(self, tensors: Mapping[str, Array]) -> list[int]:
        """Tokens per row after truncation (what the batch would be padded to)."""
        return [len(e.ids) for e in self._encode(self.texts(tensors))]

    def padding_counts(self) -> tuple[int, int]:
        """(real tokens, padded tokens) over every batch run so far."""
        with self._lock:
            return self._real, self._padded

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        encodings = self._encode(self.texts(tensors))
        lengths = [len(e.ids) for e in encodings]
        width = max(lengths, default=0)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros_like(ids)
        for row, (enc, n) in enumerate(zip(encodings, lengths, strict=True)):
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
        mask = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        with self._lock:
            self._real += sum(lengths)
            self._padded += ids.size
        out = {"input_ids": ids, "attention_mask": mask}
        if self.token_type_ids:
            out["token_type_ids"] = types
        return out

    def _encode(self, texts: list[str]) -> list[tokenizers.Encoding]:
        tok = self._loaded()
        # encode_batch hands the work to a thread pool: worth it for a batch, but for one text
        # (every request's bucket, on the event loop) the hand-off costs more than the work,
        # and far more when the pool's thread must wait for a busy core.
        return [tok.encode(texts[0])] if len(texts) == 1 else tok.encode_batch(texts)

    def _loaded(self) -> tokenizers.Tokenizer:
        if self._tokenizer is None:
            raise InferenceError("tokenize step used before load()")
        return self._tokenizer


# ---- models ----------------------------------------------------------------------------------


@register_step
class Onnx(Step):
    """Run an ONNX graph: its inputs are read by name from the batch, its outputs added.

    ``outputs`` limits which graph outputs are computed (default: all).
    """

    op: ClassVar[str] = "onnx"
    file: RelPath = "model.onnx"
    outputs: tuple[Name, ...] | None = None
    _session: onnxruntime.InferenceSession | None = PrivateAttr(default=None)
    _inputs: dict[str, np.dtype[Any]] = PrivateAttr(default_factory=dict)

    def files(self) -> tuple[str, ...]:
        return (self.file,)

    def load(self, root: Path, options: RuntimeOptions) -> None:
        ort = _require("onnxruntime", "onnxruntime")
        from modelyard.runtimes.onnx import ORT_INPUT_DTYPES, choose_providers, session_options

        self._session = ort.InferenceSession(
            str(root / self.file),
            sess_options=session_options(options),
            providers=choose_providers(options.execution_providers),
        )
        self._inputs = {
            i.name: ORT_INPUT_DTYPES.get(i.type, np.dtype(object))
            for i in self._session.get_inputs()
        }
        names = {o.name for o in self._session.get_outputs()}
        for name in self.outputs or ():
            if name not in names:
                raise InvalidInputError(
                    f"onnx step: {self.file} has no output {name!r} (has: {sorted(names)})"
                )

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        if self._session is None:
            raise InferenceError("onnx step used before load()")
        feed = {name: self._cast(tensors, name, dtype) for name, dtype in self._inputs.items()}
        names = list(self.outputs) if self.outputs else None
        results = self._session.run(names, feed)
        out_names = names or [o.name for o in self._session.get_outputs()]
        return {n: np.asarray(r) for n, r in zip(out_names, results, strict=True)}

    def _cast(self, tensors: Mapping[str, Array], name: str, dtype: np.dtype[Any]) -> Array:
        arr = tensor(tensors, name, self.op)
        if arr.dtype == dtype:
            return arr
        if dtype.kind == "O":
            return to_strings(arr)
        # Same-kind casts only (float64 -> float32 is fine, float -> int is a wiring mistake).
        if arr.dtype.kind != "O" and np.can_cast(arr.dtype, dtype, casting="same_kind"):
            return arr.astype(dtype)
        raise InvalidInputError(
            f"onnx step: tensor {name!r} has dtype {arr.dtype}; {self.file} takes {dtype}"
        )


# ---- arrays ----------------------------------------------------------------------------------
@register_step
class MeanPool(Step):
    """Mean of token vectors ``[batch, seq, dim]`` over the real tokens of ``mask``."""

    op: ClassVar[str] = "mean_pool"
    input: Name = "last_hidden_state"
    mask: Name = "attention_mask"
    output: Name = "embedding"

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        hidden = tensor(tensors, self.input, self.op)
        mask = tensor(tensors, self.mask, self.op).astype(hidden.dtype)
        summed = np.einsum("bsd,bs->bd", hidden, mask)
        counts = np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return {self.output: (summed / counts).astype(hidden.dtype, copy=False)}


@register_step
class Normalize(Step):
    """L2-normalise the last axis (cosine similarity becomes a dot product)."""

    op: ClassVar[str] = "normalize"
    input: Name = "embedding"
    output: Name | None = Field(default=None, description="default: replace the input")
    eps: float = Field(default=1e-12, gt=0)

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        x = tensor(tensors, self.input, self.op)
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        return {self.output or self.input: (x / np.maximum(norm, self.eps)).astype(x.dtype)}


@register_step
class Scale(Step):
    """Standardise features: ``(x - mean) / std`` on the last axis (a fitted scaler's numbers)."""

    op: ClassVar[str] = "scale"
    input: Name = "input"
    output: Name | None = Field(default=None, description="default: replace the input")
    mean: tuple[float, ...] = Field(min_length=1)
    std: tuple[float, ...] = Field(min_length=1)

    @field_validator("std")
    @classmethod
    def _nonzero(cls, std: tuple[float, ...]) -> tuple[float, ...]:
        if any(s == 0 for s in std):
            raise ValueError("std must not contain 0")
        return std

    @model_validator(mode="after")
    def _same_length(self) -> Scale:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        x = tensor(tensors, self.input, self.op)
        if x.ndim == 0 or x.shape[-1] != len(self.mean):
            raise InvalidInputError(
                f"input {self.input!r}: the scale step takes {len(self.mean)} features on the "
                f"last axis, got shape {list(x.shape)}"
            )
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
        mean = np.asarray(self.mean, dtype=dtype)
        std = np.asarray(self.std, dtype=dtype)
        return {self.output or self.input: ((x.astype(dtype, copy=False) - mean) / std)}


@register_step
class LabelMap(Step):
    """Class indices (or scores ``[batch, classes]``, arg-maxed) -> label strings."""

    op: ClassVar[str] = "label_map"
    input: Name = "label"
    output: Name | None = Field(default=None, description="default: replace the input")
    labels: tuple[str, ...] = Field(min_length=1)

    def run(self, tensors: Mapping[str, Array]) -> dict[str, Array]:
        x = tensor(tensors, self.input, self.op)
        index = x.argmax(axis=-1) if x.dtype.kind == "f" else x.astype(np.int64, copy=False)
        bad = index[(index < 0) | (index >= len(self.labels))]
        if bad.size:
            raise InferenceError(
                f"label_map: class index {int(bad.flat[0])} is outside the {len(self.labels)} "
                "labels"
            )
        table = np.asarray(self.labels, dtype=object)
        return {self.output or self.input: table[index]}
