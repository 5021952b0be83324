"""Load the golden V2 payload cases of this directory and check a response against one.

Transport-neutral: the REST runner posts ``case.body`` to ``case.rest_path``; a gRPC runner builds
a ``ModelInferRequest`` from ``case.model_name``, ``case.model_version`` and ``case.body``, and
hands :func:`check_response` the response as a dict shaped like the V2 JSON response (``data``
may be a list, nested lists or a numpy array; BYTES as str or bytes). See README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.types import Datatype

GOLDEN_DIR = Path(__file__).parent


@dataclass(frozen=True)
class GoldenCase:
    name: str
    model_name: str
    model_version: str | None
    body: dict[str, Any]  # the V2 inference request object, without the routing fields
    expected: dict[str, Any]  # a V2 inference response object, or {"error": substring}
    status: int  # expected HTTP status

    @property
    def rest_path(self) -> str:
        version = f"/versions/{self.model_version}" if self.model_version else ""
        return f"/v2/models/{self.model_name}{version}/infer"

    @property
    def is_error(self) -> bool:
        return self.status != 200


def load_cases(directory: Path = GOLDEN_DIR) -> list[GoldenCase]:
    """Every ``NAME.request.json`` with its ``NAME.response.json`` and optional ``NAME.status``."""
    cases = []
    for request_path in sorted(directory.glob("*.request.json")):
        name = request_path.name.removesuffix(".request.json")
        body = json.loads(request_path.read_text(encoding="utf-8"))
        expected = json.loads((directory / f"{name}.response.json").read_text(encoding="utf-8"))
        status_path = directory / f"{name}.status"
        status = int(status_path.read_text().strip()) if status_path.exists() else 200
        model_name = body.pop("model_name")
        model_version = body.pop("model_version", None)
        cases.append(GoldenCase(name, model_name, model_version, body, expected, status))
    return cases


def check_response(case: GoldenCase, status: int, doc: dict[str, Any]) -> None:
    """Raise AssertionError when ``doc`` (with its HTTP ``status``) does not match ``case``."""
    assert status == case.status, f"{case.name}: status {status}, expected {case.status}: {doc}"
    if case.is_error:
        needle = case.expected["error"]
        assert needle in doc["error"], f"{case.name}: {needle!r} not in {doc['error']!r}"
        return
    for key in ("model_name", "model_version", "id"):
        if key in case.expected:
            assert doc.get(key) == case.expected[key], f"{case.name}: {key} {doc.get(key)!r}"
    got = {out["name"]: out for out in doc["outputs"]}
    want = {out["name"]: out for out in case.expected["outputs"]}
    assert got.keys() == want.keys(), f"{case.name}: outputs {sorted(got)}, want {sorted(want)}"
    for name, expected in want.items():
        _check_output(f"{case.name}/{name}", expected, got[name])


def _check_output(where: str, expected: dict[str, Any], got: dict[str, Any]) -> None:
    assert got["datatype"] == expected["datatype"], f"{where}: datatype {got['datatype']}"
    assert list(got["shape"]) == expected["shape"], f"{where}: shape {got['shape']}"
    datatype = Datatype(expected["datatype"])
    want = _flat(expected["data"])
    have = _flat(got["data"])
    if datatype is Datatype.BYTES:
        have = [v.decode() if isinstance(v, bytes) else v for v in have]
        assert have == want, f"{where}: data {have} != {want}"
        return
    dtype = datatype.numpy_dtype
    assert np.array_equal(np.asarray(have, dtype=dtype), np.asarray(want, dtype=dtype)), (
        f"{where}: data {have} != {want}"
    )


def _flat(data: Any) -> list[Any]:
    if isinstance(data, np.ndarray):
        flat: list[Any] = data.ravel().tolist()
        return flat
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out
