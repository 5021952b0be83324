"""Checks of a request against a version's signature, done before any work is queued.

Pure functions over numpy arrays and a :class:`~modelyard.types.Signature`; they raise
:class:`~modelyard.errors.InvalidInputError` with a message that names the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelyard.errors import InvalidInputError
from modelyard.types import Array, Datatype, Signature, TensorSpec

_FLOAT_KINDS = ("f", "c")


def validate_inputs(
    signature: Signature,
    inputs: Mapping[str, Array],
    *,
    decode_bytes: bool,
    max_elements: int | None = None,
) -> dict[str, Array]:
    """Return the inputs ready for ``Runtime.predict``: every declared input present, no
    unknown input, datatype and shape as declared, finite floats unless allowed, and BYTES
    elements decoded to ``str`` when ``decode_bytes``."""
    out: dict[str, Array] = {}
    for name in inputs:
        if signature.input(name) is None:
            known = ", ".join(s.name for s in signature.inputs) or "none"
            raise InvalidInputError(f"unexpected input '{name}' (the model's inputs: {known})")
    for spec in signature.inputs:
        arr = inputs.get(spec.name)
        if arr is None:
            raise InvalidInputError(f"missing input '{spec.name}'")
        if max_elements is not None and arr.size > max_elements:
            raise InvalidInputError(
                f"input '{spec.name}' has {arr.size} elements; the limit is {max_elements}"
            )
        out[spec.name] = _check_one(spec, arr, decode_bytes)
    return out


def _check_one(spec: TensorSpec, arr: Array, decode_bytes: bool) -> Array:
    got = Datatype.from_numpy(arr.dtype)
    if got is not spec.datatype:
        raise InvalidInputError(
            f"input '{spec.name}' has datatype {got.value}; the model expects {spec.datatype.value}"
        )
    if not spec.accepts_shape(tuple(arr.shape)):
        raise InvalidInputError(
            f"input '{spec.name}' has shape {list(arr.shape)}; the model expects "
            f"{list(spec.shape)} (-1 = any size)"
        )
    if arr.dtype.kind in _FLOAT_KINDS and not spec.allow_nonfinite and arr.size:
        if not bool(np.isfinite(arr).all()):
            raise InvalidInputError(
                f"input '{spec.name}' contains NaN or Inf, which this model does not accept"
            )
    if spec.datatype is Datatype.BYTES:
        return _bytes_elements(spec.name, arr, decode=decode_bytes)
    return arr


def _bytes_elements(name: str, arr: Array, *, decode: bool) -> Array:
    flat = arr.reshape(-1)
    out = np.empty(flat.shape[0], dtype=object)
    for i, v in enumerate(flat.tolist()):
        if isinstance(v, bytes):
            if decode:
                try:
                    out[i] = v.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidInputError(
                        f"input '{name}' element {i} is not valid UTF-8 text"
                    ) from exc
            else:
                out[i] = v
        elif isinstance(v, str):
            try:
                out[i] = v if decode else v.encode("utf-8")
            except UnicodeEncodeError as exc:  # JSON "\ud800": a lone surrogate
                raise InvalidInputError(
                    f"input '{name}' element {i} is not valid Unicode text (a lone surrogate)"
                ) from exc
        else:
            raise InvalidInputError(f"input '{name}' element {i} is not a string or bytes")
    return out.reshape(arr.shape)


def select_outputs(
    signature: Signature, outputs: dict[str, Array], requested: list[str] | None
) -> dict[str, Array]:
    """Keep only the requested outputs (all when None); unknown names are a 400."""
    if requested is None:
        return outputs
    picked: dict[str, Array] = {}
    for name in requested:
        if name not in outputs:
            known = ", ".join(outputs) or "none"
            raise InvalidInputError(
                f"requested output '{name}' does not exist (the model's outputs: {known})"
            )
        picked[name] = outputs[name]
    return picked


def encode_bytes_outputs(outputs: dict[str, Array]) -> dict[str, Array]:
    """Object arrays of ``str`` become object arrays of ``bytes`` (the wire form of BYTES)."""
    for name, arr in outputs.items():
        if arr.dtype.kind == "U" or (arr.dtype == object and arr.size and not _all_bytes(arr)):
            flat = arr.reshape(-1).tolist()
            enc = np.empty(len(flat), dtype=object)
            enc[:] = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat]
            outputs[name] = enc.reshape(arr.shape)
    return outputs


def _all_bytes(arr: Array) -> bool:
    return all(isinstance(v, bytes) for v in arr.reshape(-1).tolist())
