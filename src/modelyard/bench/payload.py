"""A V2 request body for a load test, made from the model's metadata when none is given."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import orjson

from modelyard.bench.httpclient import parse_target
from modelyard.errors import InvalidInputError, ModelNotFoundError, UnavailableError

_INT_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64"}


def _sample_values(datatype: str, count: int, where: str) -> list[Any]:
    if datatype in _FLOAT_TYPES:
        # Deterministic, varied, finite values: the same body on every run and every server.
        return [round(((i * 7919) % 1000) / 1000.0, 3) for i in range(count)]
    if datatype in _INT_TYPES:
        return [i % 8 for i in range(count)]
    if datatype == "BOOL":
        return [i % 2 == 0 for i in range(count)]
    if datatype == "BYTES":
        return ["modelyard"] * count
    raise InvalidInputError(f"{where}.datatype: unknown V2 datatype {datatype!r}")


def payload_from_metadata(metadata: Mapping[str, Any], *, batch: int = 1) -> dict[str, Any]:
    """A V2 request with one tensor per input of ``metadata`` (the body of
    ``GET /v2/models/{name}``): variable dims (-1) become ``batch`` for the first dim and 1
    elsewhere; values are deterministic. Raises InvalidInputError naming the bad field."""
    if batch < 1:
        raise InvalidInputError(f"batch must be >= 1, got {batch}")
    inputs = metadata.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("model metadata: 'inputs' must be a non-empty list")
    tensors = []
    for i, spec in enumerate(inputs):
        where = f"model metadata inputs[{i}]"
        if not isinstance(spec, Mapping):
            raise InvalidInputError(f"{where} must be an object")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{where}.name must be a non-empty string")
        if not isinstance(datatype, str):
            raise InvalidInputError(f"{where}.datatype must be a string")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape
        ):
            raise InvalidInputError(f"{where}.shape must be a list of integers >= -1")
        dims = [(batch if pos == 0 else 1) if d == -1 else d for pos, d in enumerate(shape)]
        count = 1
        for d in dims:
            count *= d
        if count > 1_000_000:
            raise InvalidInputError(f"{where}.shape {shape} is too large for a generated payload")
        data = _sample_values(datatype, count, where)
        tensors.append({"name": name, "shape": dims, "datatype": datatype, "data": data})
    return {"inputs": tensors}


def fetch_metadata(url: str, model: str, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """``GET {url}/v2/models/{model}``. Raises ModelNotFoundError (404), UnavailableError
    (unreachable or another error status) or InvalidInputError (not a JSON object)."""
    target = parse_target(url, model)
    scheme = "https" if target.tls else "http"
    meta_url = f"{scheme}://{target.host_header}{target.path.removesuffix('/infer')}"
    try:
        with urllib.request.urlopen(meta_url, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ModelNotFoundError(f"model {model!r}: {meta_url} answered 404") from exc
        raise UnavailableError(f"{meta_url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnavailableError(f"cannot reach {meta_url}: {reason}") from exc
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{meta_url} did not answer JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise InvalidInputError(f"{meta_url} did not answer a JSON object")
    return meta
