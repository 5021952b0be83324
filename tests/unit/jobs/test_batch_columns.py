"""Column mapping: which columns feed which model input, and the errors that name the column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from modelyard.errors import InvalidInputError
from modelyard.jobs.columns import feature_names_of, outputs_to_columns, plan_mapping
from modelyard.types import Datatype, Signature, TensorSpec
from tests.unit.jobs.conftest import LINEAR, feature_table


def sig(*inputs: TensorSpec, outputs: tuple[TensorSpec, ...] = ()) -> Signature:
    out = outputs or (TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1,)),)
    return Signature(inputs=inputs, outputs=out)


def spec(name: str, datatype: Datatype, *shape: int) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape)


TABLE = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "name": pa.array(["a", "b", "c"]),
        "a": pa.array([1.0, 2.0, 3.0], pa.float64()),
        "b": pa.array([10, 20, 30], pa.int32()),
        "c": pa.array([0.5, 0.25, 0.125], pa.float32()),
        "flag": pa.array([True, False, True]),
        "vec": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float32())),
    }
)


@pytest.mark.parametrize(
    ("signature", "kwargs", "expected"),
    [
        # rule 4: the first n numeric columns that are not keys
        (sig(spec("x", Datatype.FP32, -1, 2)), {"keys": ["id"]}, {"x": ["a", "b"]}),
        (sig(spec("x", Datatype.FP32, -1, 3)), {}, {"x": ["id", "a", "b"]}),
        (sig(spec("x", Datatype.FP64, -1, -1)), {"keys": ["id"]}, {"x": ["a", "b", "c"]}),
        # rule 1: explicit columns, for the only 2-D input ("") or by name
        (sig(spec("x", Datatype.FP32, -1, 2)), {"columns": {"": ["c", "a"]}}, {"x": ["c", "a"]}),
        (sig(spec("x", Datatype.FP32, -1, 2)), {"columns": {"x": ["b", "c"]}}, {"x": ["b", "c"]}),
        # rule 2: feature names recorded with the version
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"feature_names": {"x": ["c", "b"]}},
            {"x": ["c", "b"]},
        ),
        # rule 3: a column named like the input
        (
            sig(spec("a", Datatype.FP32, -1), spec("name", Datatype.BYTES, -1)),
            {},
            {"a": ["a"], "name": ["name"]},
        ),
        (sig(spec("flag", Datatype.BOOL, -1, 1)), {}, {"flag": ["flag"]}),
        (sig(spec("vec", Datatype.FP32, -1, 2)), {}, {"vec": ["vec"]}),
        # an earlier input's columns are not reused by a later positional one
        (
            sig(spec("a", Datatype.FP32, -1), spec("x", Datatype.FP32, -1, 2)),
            {"keys": ["id"]},
            {"a": ["a"], "x": ["b", "c"]},
        ),
    ],
)
def test_plans(
    signature: Signature, kwargs: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    mapping = plan_mapping(TABLE.schema, signature, **kwargs)
    assert mapping.describe()["inputs"] == expected


@pytest.mark.parametrize(
    ("signature", "kwargs", "message"),
    [
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"keys": ["nope"]},
            "column 'nope' \\(--key\\) is missing",
        ),
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"columns": {"": ["a", "zz"]}},
            "column 'zz' \\(model input 'x'\\) is missing from the input",
        ),
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"columns": {"": ["a", "name"]}},
            "column 'name' in the input is string; model input 'x' is FP32 and takes numeric",
        ),
        (
            sig(spec("x", Datatype.INT32, -1, 2)),
            {"columns": {"": ["b", "a"]}},
            "column 'a' in the input is double; model input 'x' is INT32 and takes integer",
        ),
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"columns": {"": ["a", "b", "c"]}},
            "takes 2 feature columns; 3 are named",
        ),
        (
            sig(spec("x", Datatype.FP32, -1, 9)),
            {},
            "takes 9 feature columns but the input has 4 numeric columns that are not keys "
            r"\(id, a, b, c\)",
        ),
        (sig(spec("zz", Datatype.FP32, -1)), {}, "no column for model input 'zz'"),
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"columns": {"q": ["a"]}},
            "--columns names input 'q'",
        ),
        (sig(spec("x", Datatype.FP32, 1, 2, 3)), {}, "tables feed inputs shaped"),
        (sig(spec("x", Datatype.FP32, -1, 2)), {"outputs": ["nope"]}, "--outputs names 'nope'"),
        (
            sig(spec("x", Datatype.FP32, -1, 2)),
            {"keys": ["y"]},
            "column 'y' \\(--key\\) is missing",
        ),
    ],
)
def test_plan_errors_name_the_column(
    signature: Signature, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_mapping(TABLE.schema, signature, **kwargs)


def test_output_named_like_a_key_is_refused() -> None:
    table = pa.table({"y": [1.0], "a": [1.0]})
    with pytest.raises(InvalidInputError, match="output 'y' has the name of a key column"):
        plan_mapping(table.schema, sig(spec("a", Datatype.FP32, -1)), keys=["y"])


def test_matrix_conversion_keeps_row_order_and_dtype() -> None:
    table = feature_table(5)
    mapping = plan_mapping(table.schema, LINEAR, keys=["id"])
    batch = table.to_batches()[0]
    x = mapping.to_inputs(batch)["input"]
    assert x.dtype == np.float32 and x.shape == (5, 20)
    assert x[3, 0] == 3.0 and x[3, 19] == np.float32(3.19)
    assert mapping.columns()[0] == "id"


def test_column_and_list_and_bytes_conversion() -> None:
    signature = sig(
        spec("a", Datatype.FP32, -1, 1),
        spec("vec", Datatype.FP64, -1, 2),
        spec("name", Datatype.BYTES, -1),
        spec("b", Datatype.INT64, -1),
    )
    inputs = plan_mapping(TABLE.schema, signature).to_inputs(TABLE.to_batches()[0])
    assert inputs["a"].shape == (3, 1) and inputs["a"].dtype == np.float32
    np.testing.assert_array_equal(inputs["vec"], [[1, 2], [3, 4], [5, 6]])
    assert inputs["vec"].dtype == np.float64
    assert inputs["name"].tolist() == ["a", "b", "c"]
    assert inputs["b"].dtype == np.int64


def test_integer_overflow_is_an_error_not_a_wraparound() -> None:
    table = pa.table({"n": pa.array([1, 300], pa.int64())})
    mapping = plan_mapping(table.schema, sig(spec("n", Datatype.UINT8, -1)))
    with pytest.raises(
        InvalidInputError, match="column 'n' in part-7 does not fit model input 'n'"
    ):
        mapping.to_inputs(table.to_batches()[0], "part-7")


def test_nulls_are_refused_for_integers_and_become_nan_for_floats() -> None:
    table = pa.table({"n": pa.array([1, None], pa.int64()), "f": pa.array([1.0, None])})
    ints = plan_mapping(table.schema, sig(spec("n", Datatype.INT64, -1)))
    with pytest.raises(InvalidInputError, match="column 'n' has 1 missing values in the input"):
        ints.to_inputs(table.to_batches()[0])
    floats = plan_mapping(table.schema, sig(spec("f", Datatype.FP32, -1)))
    values = floats.to_inputs(table.to_batches()[0])["f"]
    assert values[0] == 1.0 and np.isnan(values[1])


def test_ragged_list_column_is_refused() -> None:
    table = pa.table({"vec": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))})
    mapping = plan_mapping(table.schema, sig(spec("vec", Datatype.FP32, -1, 2)))
    with pytest.raises(InvalidInputError, match="rows of different lengths"):
        mapping.to_inputs(table.to_batches()[0])


def test_check_schema_catches_a_changed_file() -> None:
    mapping = plan_mapping(TABLE.schema, sig(spec("x", Datatype.FP32, -1, 2)), keys=["id"])
    changed = pa.schema([("id", pa.int64()), ("a", pa.string()), ("b", pa.int32())])
    with pytest.raises(InvalidInputError, match=r"column 'a' in b\.parquet is string"):
        mapping.check_schema(changed, "b.parquet")


def test_outputs_become_columns() -> None:
    texts = np.array([b"yes", b"no"], dtype=object)
    raw = np.array([b"\xff", b"ok"], dtype=object)
    columns = outputs_to_columns(
        {
            "scalar": np.array([1.0, 2.0], np.float32),
            "col": np.array([[1], [2]], np.int64),
            "wide": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
            "text": texts,
            "raw": raw,
        },
        ["scalar", "col", "wide", "text", "raw"],
    )
    assert columns[0].type == pa.float32()
    assert columns[1].to_pylist() == [1, 2]
    assert columns[2].type == pa.list_(pa.float64(), 3)
    assert columns[2].to_pylist()[1] == [4.0, 5.0, 6.0]
    assert columns[3].type == pa.string() and columns[3].to_pylist() == ["yes", "no"]
    assert columns[4].type == pa.binary()


def test_feature_names_from_metadata_or_runtime_options() -> None:
    one = Signature(inputs=(spec("x", Datatype.FP32, -1, 2),))
    assert feature_names_of({"feature_names": ["p", "q"]}, {}, one) == {"x": ["p", "q"]}
    assert feature_names_of({}, {"feature_names": ["r", "s"]}, one) == {"x": ["r", "s"]}
    assert feature_names_of({"feature_names": {"x": ["t"]}}, {}, one) == {"x": ["t"]}
    assert feature_names_of({}, {}, one) == {}
