"""In-process prediction for ``modelyard predict``: registry -> runtime -> outputs, no server.

The CLI reads JSON typed by people, so this module turns nested lists into numpy arrays of the
model's datatypes with messages that name the input, then reuses the dataplane's signature checks
(:func:`modelyard.core.validation.validate_inputs`) so the CLI accepts exactly what a server would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from modelyard.core.validation import validate_inputs
from modelyard.errors import InferenceError, InvalidInputError, ModelLoadError, ModelYardError
from modelyard.registry.registry import ModelVersion, Registry
from modelyard.runtime import Runtime
from modelyard.settings import Settings
from modelyard.types import Array, Datatype, Signature, TensorSpec

_REF = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<alias>[^@:]+)|:(?P<version>\d+))?$")


def parse_model_ref(text: str) -> tuple[str, str | int | None]:
    """``name`` -> (name, None); ``name@alias`` -> (name, alias); ``name:3`` -> (name, 3)."""
    match = _REF.match(text.strip())
    if match is None:
        raise InvalidInputError(
            f"MODEL '{text}' is not a model reference; use NAME, NAME@ALIAS or NAME:VERSION"
        )
    if match["version"] is not None:
        return match["name"], int(match["version"])
    return match["name"], match["alias"]


def load_runtime(registry: Registry, version: ModelVersion, settings: Settings) -> Runtime:
    """Fetch a version's files (checksums verified) and load its runtime in this process,
    the same way the server's model cache does."""
    from modelyard.app import make_loader, runtime_options
    from modelyard.core.model_cache import CacheKey

    load = make_loader(registry, runtime_options(settings))
    try:
        return load(CacheKey(version.model, version.version))
    except ModelYardError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"model '{version.ref}' failed to load: {type(exc).__name__}: {exc}"
        ) from exc


def predict(runtime: Runtime, payload: Any, *, ref: str = "model") -> dict[str, Array]:
    """Run ``runtime`` on a parsed ``--input`` payload; returns the signature's outputs.
    ``ref`` names the version in error messages."""
    signature = runtime.manifest.signature
    arrays = parse_inputs(payload, signature)
    inputs = validate_inputs(signature, arrays, decode_bytes=not runtime.accepts_raw_bytes)
    try:
        return runtime.predict(inputs)
    except ModelYardError:
        raise
    except Exception as exc:
        raise InferenceError(f"model '{ref}' failed: {type(exc).__name__}: {exc}") from exc


def read_payload(text: str) -> Any:
    """Parse the ``--input`` JSON text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"--input is not valid JSON: {exc}") from exc


def parse_inputs(payload: Any, signature: Signature) -> dict[str, Array]:
    """Accept ``{"input name": nested list, ...}`` or a V2 request body ``{"inputs": [...]}``.

    A row given without its batch axis (``[5.1, 3.5, 1.4, 0.2]`` for a ``[-1, 4]`` input) gets
    one, so single examples can be typed as they are read.
    """
    if not isinstance(payload, dict):
        raise InvalidInputError("--input must be a JSON object (input name -> data, or a V2 body)")
    entries = payload.get("inputs")
    if isinstance(entries, list) and all(isinstance(e, dict) for e in entries):
        return _parse_v2(entries)
    out: dict[str, Array] = {}
    for name, data in payload.items():
        spec = signature.input(name)
        if spec is None:
            known = ", ".join(s.name for s in signature.inputs) or "none"
            raise InvalidInputError(f"unexpected input '{name}' (the model's inputs: {known})")
        out[name] = _add_batch_axis(spec, to_array(name, data, spec.datatype))
    return out


def _parse_v2(entries: list[dict[str, Any]]) -> dict[str, Array]:
    out: dict[str, Array] = {}
    for i, entry in enumerate(entries):
        for key in ("name", "shape", "datatype", "data"):
            if key not in entry:
                raise InvalidInputError(f"inputs[{i}] lacks the field '{key}'")
        name = str(entry["name"])
        try:
            datatype = Datatype(entry["datatype"])
        except ValueError as exc:
            raise InvalidInputError(
                f"input '{name}': unknown datatype {entry['datatype']!r}"
            ) from exc
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InvalidInputError(f"input '{name}': shape must be a list of integers >= 0")
        arr = to_array(name, entry["data"], datatype)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise InvalidInputError(
                f"input '{name}': {arr.size} data elements do not fill shape {shape}"
            )
        out[name] = arr.reshape(shape)
    return out


def to_array(name: str, data: Any, datatype: Datatype) -> Array:
    """A JSON value (number, string, bool or rectangular nested list) as a numpy array of
    ``datatype``; refuses values that would change on conversion (1.5 as INT32, 300 as UINT8)."""
    try:
        raw = np.asarray(data)
    except ValueError as exc:
        raise InvalidInputError(f"input '{name}': the nested lists are not rectangular") from exc
    kind = raw.dtype.kind
    if datatype is Datatype.BYTES:
        if raw.size and kind != "U":
            raise InvalidInputError(f"input '{name}' is BYTES: give strings")
        return raw.astype(object)
    if raw.size == 0:
        return raw.astype(datatype.numpy_dtype)
    if kind not in "biuf":
        raise InvalidInputError(f"input '{name}' is {datatype.value}: give numbers")
    if datatype is Datatype.BOOL:
        if kind != "b":
            raise InvalidInputError(f"input '{name}' is BOOL: give true/false")
        return raw
    target = datatype.numpy_dtype
    if target.kind in "iu":
        _check_integers(name, raw, datatype)
    # Overflow to Inf (1e39 as FP32) is reported by the signature check, not as a warning.
    with np.errstate(over="ignore"):
        return raw.astype(target)


def _check_integers(name: str, raw: Array, datatype: Datatype) -> None:
    if raw.dtype.kind == "b":
        raise InvalidInputError(f"input '{name}' is {datatype.value}: give integers, not booleans")
    if raw.dtype.kind == "f":
        raise InvalidInputError(f"input '{name}' is {datatype.value}: give integers")
    info = np.iinfo(datatype.numpy_dtype)
    low, high = int(raw.min()), int(raw.max())
    if low < info.min or high > info.max:
        raise InvalidInputError(
            f"input '{name}': values must lie in [{info.min}, {info.max}] for {datatype.value}"
        )


def _add_batch_axis(spec: TensorSpec, arr: Array) -> Array:
    batched = (1, *arr.shape)
    if (
        not spec.accepts_shape(tuple(arr.shape))
        and spec.shape
        and spec.shape[0] == -1
        and spec.accepts_shape(batched)
    ):
        return arr.reshape(batched)
    return arr


def outputs_to_json(outputs: Mapping[str, Array]) -> bytes:
    """Outputs as one JSON object (name -> nested list); BYTES elements as UTF-8 text."""
    return orjson.dumps({name: _jsonable(arr) for name, arr in outputs.items()})


def _jsonable(arr: Array) -> Any:
    if arr.dtype.kind in ("O", "S", "U"):
        flat = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in arr.reshape(-1).tolist()
        ]
        return np.asarray(flat, dtype=object).reshape(arr.shape).tolist()
    return arr.tolist()
