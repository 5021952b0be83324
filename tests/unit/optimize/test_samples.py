"""Which inputs parity is checked on and profiles are timed with."""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.errors import InvalidInputError
from modelyard.manifest import Manifest
from modelyard.optimize.samples import FREE_DIM, batch_of, choose_sample, random_inputs
from modelyard.runtime import warmup_example
from modelyard.types import Array, Datatype, Signature, TensorSpec

SIG = Signature(
    inputs=(
        TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 3)),
        TensorSpec(name="ids", datatype=Datatype.INT64, shape=(-1, -1)),
        TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,)),
        TensorSpec(name="on", datatype=Datatype.BOOL, shape=(-1,)),
    )
)
EXAMPLE: dict[str, Array] = {
    "x": np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32),
    "ids": np.array([[1, 2], [3, 4]], dtype=np.int64),
    "text": np.array(["a", "b"], dtype=object),
    "on": np.array([True, False]),
}


def _manifest(warmup: bool) -> Manifest:
    return Manifest(
        runtime="onnx", signature=SIG, warmup=warmup_example(EXAMPLE) if warmup else None
    )


def test_auto_uses_the_warmup_example_when_there_is_one() -> None:
    sample = choose_sample(_manifest(warmup=True))
    assert sample.source == "warm-up example"
    assert sample.rows == 2
    assert sample.describe() == "warm-up example, 2 rows"
    np.testing.assert_array_equal(sample.inputs["x"], EXAMPLE["x"])


@pytest.mark.parametrize("mode", ["auto", "random"])
def test_random_rows_when_asked_or_without_example(mode: str) -> None:
    sample = choose_sample(_manifest(warmup=mode == "random"), mode, rows=5, seed=3)
    assert sample.source == "random rows (seed 3)"
    assert sample.rows == 5
    shapes = {name: arr.shape for name, arr in sample.inputs.items()}
    assert shapes == {"x": (5, 3), "ids": (5, FREE_DIM), "text": (5,), "on": (5,)}


def test_warmup_mode_without_an_example_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no warm-up example"):
        choose_sample(_manifest(warmup=False), "warmup")


def test_random_inputs_have_the_signature_types_and_are_seeded() -> None:
    first = random_inputs(SIG, 4, seed=1)
    again = random_inputs(SIG, 4, seed=1)
    assert {k: v.dtype for k, v in first.items()} == {
        "x": np.dtype(np.float32),
        "ids": np.dtype(np.int64),
        "text": np.dtype(object),
        "on": np.dtype(np.bool_),
    }
    assert set(np.unique(first["ids"]).tolist()) == {0, 1}
    assert list(first["text"]) == ["sample 0", "sample 1", "sample 2", "sample 3"]
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])


def test_batches_repeat_the_sample_rows_in_order() -> None:
    batch = batch_of(EXAMPLE, SIG, 5)
    assert batch["x"][:, 0].tolist() == [1.0, 4.0, 1.0, 4.0, 1.0]
    assert batch["ids"].shape == (5, 2)
    assert list(batch["text"]) == ["a", "b", "a", "b", "a"]


def test_an_input_without_batch_axis_allows_batch_size_one_only() -> None:
    fixed = Signature(inputs=(TensorSpec(name="img", datatype=Datatype.FP32, shape=(3, 2)),))
    img = np.zeros((3, 2), dtype=np.float32)
    assert batch_of({"img": img}, fixed, 1)["img"] is img
    with pytest.raises(InvalidInputError, match="no batch axis"):
        batch_of({"img": img}, fixed, 8)
