"""Fallback selection: pure functions deciding whether a primary answer needs a fallback, why,
and which steps of the chain to try; plus the static default answer of a spec.

Reasons: ``timeout`` (the endpoint's deadline passed), ``error`` (a server-side failure: the
model failed, could not load, is missing or overloaded) and ``nonfinite`` (NaN or Inf in a
floating point output). A client's own mistake (``INVALID_ARGUMENT``) is never a reason: a
backup would reject it too, and a default would hide the bug from the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from modelyard.errors import ErrorCode, InvalidInputError, ModelYardError
from modelyard.traffic.spec import Fallback, FallbackStep
from modelyard.types import Array, Datatype

Reason = Literal["error", "timeout", "nonfinite"]

_NOT_A_REASON = frozenset({ErrorCode.INVALID_ARGUMENT})


def failure_reason(exc: BaseException) -> Reason | None:
    """Why a primary call that raised ``exc`` may fall back; None when it must not."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if not isinstance(exc, ModelYardError):
        return "error"
    if exc.code is ErrorCode.DEADLINE_EXCEEDED:
        return "timeout"
    if exc.code in _NOT_A_REASON:
        return None
    return "error"


def has_nonfinite(outputs: Mapping[str, Array]) -> bool:
    """True when a floating point output holds NaN or +-Inf."""
    for array in outputs.values():
        arr = np.asarray(array)
        if arr.dtype.kind in "fc" and not bool(np.isfinite(arr).all()):
            return True
    return False


def steps_for(fallback: Fallback | None, reason: Reason | None) -> tuple[FallbackStep, ...]:
    """The chain to try for ``reason``: the whole chain when the spec falls back on it, else
    nothing."""
    if fallback is None or reason is None or reason not in fallback.on:
        return ()
    return fallback.chain


def static_outputs(step: FallbackStep, where: str = "fallback.chain") -> dict[str, Array]:
    """The arrays of a ``static`` step (``{name: {datatype, shape, data}}``), checked: a wrong
    datatype, shape or element count is an InvalidInputError naming the field."""
    out: dict[str, Array] = {}
    for name, doc in (step.outputs or {}).items():
        field = f"{where}.outputs.{name}"
        out[name] = _static_array(doc, field)
    return out


def _static_array(doc: Mapping[str, Any], field: str) -> Array:
    if not isinstance(doc, Mapping):
        raise InvalidInputError(f"{field}: must be an object with datatype, shape and data")
    unknown = set(doc) - {"datatype", "shape", "data"}
    if unknown:
        raise InvalidInputError(f"{field}: unknown keys {sorted(unknown)}")
    try:
        datatype = Datatype(str(doc.get("datatype", "")).upper())
    except ValueError:
        raise InvalidInputError(
            f"{field}.datatype: {doc.get('datatype')!r} is not a V2 datatype "
            f"({', '.join(d.value for d in Datatype)})"
        ) from None
    shape = doc.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInputError(f"{field}.shape: must be a list of non-negative integers")
    data = doc.get("data")
    if not isinstance(data, list):
        raise InvalidInputError(f"{field}.data: must be a list")
    try:
        if datatype is Datatype.BYTES:
            flat = np.array(
                [v.encode() if isinstance(v, str) else v for v in _flatten(data)], dtype=object
            )
        else:
            flat = np.asarray(_flatten(data), dtype=datatype.numpy_dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{field}.data: not {datatype.value} values: {exc}") from exc
    count = int(np.prod(shape)) if shape else 1
    if flat.size != count:
        raise InvalidInputError(
            f"{field}.data: {flat.size} values do not fill shape {shape} ({count} values)"
        )
    array = flat.reshape(shape)
    array.flags.writeable = False  # shared by every response that falls back to it
    return array


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out
