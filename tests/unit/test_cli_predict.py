"""JSON typed on the command line -> numpy inputs, with errors that name the input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.cli_predict import outputs_to_json, parse_inputs, parse_model_ref, to_array
from modelyard.errors import InvalidInputError
from modelyard.types import Datatype, Signature, TensorSpec

SIG = Signature(
    inputs=(
        TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 2)),
        TensorSpec(name="t", datatype=Datatype.BYTES, shape=(-1,)),
    ),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud", ("fraud", None)),
        ("fraud@production", ("fraud", "production")),
        ("fraud:3", ("fraud", 3)),
        (" fraud:12 ", ("fraud", 12)),
    ],
)
def test_model_refs(text: str, expected: tuple[str, Any]) -> None:
    assert parse_model_ref(text) == expected


@pytest.mark.parametrize("text", ["", "fraud:", "fraud:x", "fraud@", "a@b:3", "a:1:2"])
def test_bad_model_refs(text: str) -> None:
    with pytest.raises(InvalidInputError, match="NAME@ALIAS or NAME:VERSION"):
        parse_model_ref(text)


@pytest.mark.parametrize(
    ("data", "datatype", "dtype", "shape"),
    [
        ([[1, 2], [3, 4]], Datatype.INT32, np.int32, (2, 2)),
        ([1.5, 2], Datatype.FP32, np.float32, (2,)),
        ([1, 2], Datatype.FP64, np.float64, (2,)),
        ([True, False], Datatype.BOOL, np.bool_, (2,)),
        ([255, 0], Datatype.UINT8, np.uint8, (2,)),
        ([2**64 - 1], Datatype.UINT64, np.uint64, (1,)),
        (["a", "é"], Datatype.BYTES, np.dtype(object), (2,)),
        ([], Datatype.INT64, np.int64, (0,)),
        (7, Datatype.INT16, np.int16, ()),
    ],
)
def test_to_array_converts_exactly(
    data: Any, datatype: Datatype, dtype: Any, shape: tuple[int, ...]
) -> None:
    arr = to_array("v", data, datatype)
    assert arr.dtype == np.dtype(dtype)
    assert arr.shape == shape


@pytest.mark.parametrize(
    ("data", "datatype", "message"),
    [
        ([1.5], Datatype.INT32, "input 'v' is INT32: give integers"),
        ([300], Datatype.UINT8, r"input 'v': values must lie in \[0, 255\]"),
        ([-1], Datatype.UINT32, "values must lie in"),
        ([True], Datatype.INT8, "not booleans"),
        ([1], Datatype.BOOL, "give true/false"),
        (["a"], Datatype.FP32, "give numbers"),
        ([1], Datatype.BYTES, "give strings"),
        ([[1, 2], [3]], Datatype.FP32, "not rectangular"),
        ([None], Datatype.FP32, "give numbers"),
    ],
)
def test_to_array_refuses_lossy_values(data: Any, datatype: Datatype, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        to_array("v", data, datatype)


def test_name_to_list_form_adds_a_missing_batch_axis() -> None:
    out = parse_inputs({"x": [1, 2], "t": "hello"}, SIG)
    assert out["x"].shape == (1, 2)
    assert out["x"].dtype == np.float32
    assert out["t"].tolist() == ["hello"]


def test_v2_body_form() -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        ]
    }
    out = parse_inputs(body, SIG)
    np.testing.assert_array_equal(out["x"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert out["t"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"y": [1, 2]}, "unexpected input 'y' \\(the model's inputs: x, t\\)"),
        ({"inputs": [{"name": "x", "shape": [2]}]}, "inputs\\[0\\] lacks the field 'datatype'"),
        (
            {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
            "input 'x': 2 data elements do not fill shape \\[3\\]",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]},
            "input 'x': unknown datatype 'FP99'",
        ),
        (
            {"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]},
            "input 'x': shape must be a list of integers >= 0",
        ),
    ],
)
def test_bad_payloads_name_the_field(payload: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_inputs(payload, SIG)


def test_outputs_to_json_decodes_bytes() -> None:
    text = np.empty(2, dtype=object)
    text[:] = [b"yes", "no"]
    out = outputs_to_json({"n": np.array([[1.5, 2.0]], dtype=np.float32), "t": text})
    assert out == b'{"n":[[1.5,2.0]],"t":["yes","no"]}'
