import pytest

from modelyard.bench.payload import payload_from_metadata
from modelyard.errors import InvalidInputError

META = {
    "name": "m",
    "inputs": [
        {"name": "input", "datatype": "FP32", "shape": [-1, 20]},
        {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
        {"name": "flag", "datatype": "BOOL", "shape": [2]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
    ],
}


def test_variable_dims_become_batch_first_and_one_elsewhere() -> None:
    body = payload_from_metadata(META, batch=3)
    shapes = {t["name"]: t["shape"] for t in body["inputs"]}
    assert shapes == {"input": [3, 20], "ids": [3, 1], "flag": [2], "text": [3]}


def test_data_fits_shape_and_datatype() -> None:
    body = payload_from_metadata(META)
    tensors = {t["name"]: t for t in body["inputs"]}
    assert len(tensors["input"]["data"]) == 20
    assert all(isinstance(v, float) and 0 <= v < 1 for v in tensors["input"]["data"])
    assert all(isinstance(v, int) for v in tensors["ids"]["data"])
    assert tensors["flag"]["data"] == [True, False]
    assert tensors["text"]["data"] == ["modelyard"]
    assert payload_from_metadata(META) == body  # deterministic


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({}, "'inputs' must be a non-empty list"),
        ({"inputs": []}, "'inputs' must be a non-empty list"),
        ({"inputs": ["x"]}, r"inputs\[0\] must be an object"),
        ({"inputs": [{"datatype": "FP32", "shape": [1]}]}, r"inputs\[0\].name"),
        ({"inputs": [{"name": "a", "shape": [1]}]}, r"inputs\[0\].datatype must be"),
        ({"inputs": [{"name": "a", "datatype": "FP8", "shape": [1]}]}, "unknown V2 datatype"),
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [-2]}]}, r"inputs\[0\].shape"),
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": "1"}]}, r"inputs\[0\].shape"),
        ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [10**4, 10**4]}]}, "too large"),
    ],
)
def test_bad_metadata_names_the_field(meta: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        payload_from_metadata(meta)


def test_batch_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="batch"):
        payload_from_metadata(META, batch=0)
