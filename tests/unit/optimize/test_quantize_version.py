"""Dynamic int8 quantisation of ONNX versions: a MatMul-heavy graph shrinks; the rest is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from sklearn.linear_model import LogisticRegression

from modelyard.convert import to_onnx
from modelyard.errors import FailedPreconditionError
from modelyard.optimize.converting import ParityError
from modelyard.optimize.quantizing import (
    Quantized,
    QuantizeOptions,
    dedupe_opsets,
    new_ops,
    quantize_version,
    replaced_weights,
)
from modelyard.optimize.samples import FREE_DIM
from modelyard.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes.onnx import MODEL_FILE
from tests.unit.optimize.models import FEATURES, matmul_classifier
from tests.unit.runtimes.models import iris_like


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "reg") as registry:
        yield registry


def _quantize(reg: Registry, name: str, number: int, **kwargs: object) -> Quantized:
    return quantize_version(reg, reg.get_version(name, number), RuntimeOptions(), **kwargs)  # type: ignore[arg-type]


def test_a_matmul_model_shrinks_and_keeps_its_classes(reg: Registry, tmp_path: Path) -> None:
    reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp")
    done = _quantize(reg, "mlp", 1, alias="int8")

    assert done.pushed.version == 2
    assert reg.aliases("mlp") == {"int8": 2}
    assert done.weights_quantized == 3  # the three MatMul weight matrices
    assert done.new_ops["MatMulInteger"] == 3
    assert done.bytes_after < done.bytes_before * 0.4  # int8 weights: about a quarter
    assert done.sample.describe() == "random rows (seed 0), 64 rows"  # no warm-up example
    assert done.parity.rows == 64
    assert done.parity.agreement is not None and done.parity.agreement >= 0.99
    assert set(done.parity.as_dict()["outputs"]) == {"probabilities", "label"}

    pushed = reg.get_version("mlp", 2)
    meta = pushed.metadata
    assert meta["quantized_from"] == "mlp:1"
    assert (
        meta["size_bytes_before"]
        == done.bytes_before
        == reg.get_version("mlp", 1).manifest.total_bytes()
    )
    assert meta["size_bytes_after"] == done.bytes_after == pushed.manifest.total_bytes()
    assert meta["quantization"]["weight_type"] == "QInt8"
    assert meta["parity"]["agreement"] == done.parity.agreement
    stored = onnx.load_model(str(reg.fetch(pushed) / MODEL_FILE))
    original = onnx.load_model(str(reg.fetch(reg.get_version("mlp", 1)) / MODEL_FILE))
    assert replaced_weights(original, stored) == ["w1", "w2", "w3"]
    int8 = [i for i in stored.graph.initializer if i.data_type == TensorProto.INT8]
    assert sorted(i.name for i in int8 if len(i.dims) == 2) == [
        "w1_quantized",
        "w2_quantized",
        "w3_quantized",
    ]
    assert pushed.manifest.signature == reg.get_version("mlp", 1).manifest.signature


def test_the_warmup_example_is_the_sample_and_is_kept(reg: Registry, tmp_path: Path) -> None:
    rows = np.random.default_rng(1).standard_normal((3, FEATURES)).astype(np.float32)
    reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp", warmup={"input": rows})
    done = _quantize(reg, "mlp", 1, quantize=QuantizeOptions(per_channel=True))
    assert done.sample.describe() == "warm-up example, 3 rows"
    assert reg.get_version("mlp", 2).manifest.warmup == reg.get_version("mlp", 1).manifest.warmup
    assert reg.get_version("mlp", 2).metadata["quantization"]["per_channel"] is True


def test_outside_the_thresholds_nothing_is_pushed(reg: Registry, tmp_path: Path) -> None:
    reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp")
    with pytest.raises(ParityError, match=r"'probabilities': max abs diff .* > 0; nothing pushed"):
        _quantize(reg, "mlp", 1, max_abs_diff=0.0)
    assert [v.version for v in reg.list_versions("mlp")] == [1]


def test_a_model_without_quantisable_weights_is_refused(reg: Registry, tmp_path: Path) -> None:
    x, y = iris_like()
    converted = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x.astype(np.float32))
    reg.push(converted.save(tmp_path / "lr.onnx"), name="lr")  # LinearClassifier: ai.onnx.ml
    with pytest.raises(FailedPreconditionError, match="nothing to quantise"):
        _quantize(reg, "lr", 1)
    assert len(reg.list_versions("lr")) == 1


def test_a_non_onnx_version_is_refused(reg: Registry) -> None:
    x, y = iris_like()
    reg.push(LogisticRegression(max_iter=500).fit(x, y), name="lr")
    with pytest.raises(FailedPreconditionError, match="'sklearn' version; quantize takes onnx"):
        _quantize(reg, "lr", 1)


def test_an_embedding_table_is_quantised_on_random_token_ids(reg: Registry, tmp_path: Path) -> None:
    # Token-like input [N, T]: Gather from an embedding table, mean over T.
    table = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "ids"], ["e"]),
            helper.make_node("ReduceMean", ["e"], ["pooled"], axes=[1], keepdims=0),
        ],
        "tokens",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 64])],
        [onnx.numpy_helper.from_array(table, "emb")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "tokens.onnx"))
    reg.push(tmp_path / "tokens.onnx", name="tok")
    done = _quantize(reg, "tok", 1, max_abs_diff=0.05)
    assert done.weights_quantized == 1  # the embedding table
    assert done.sample.inputs["ids"].shape == (64, FREE_DIM)
    assert done.parity.outputs[0].kind == "float"
    assert done.bytes_after < done.bytes_before / 2


@pytest.mark.parametrize(
    ("opsets", "kept", "dropped"),
    [
        ([("", 22), ("", 22), ("ai.onnx.ml", 1)], {"": 22, "ai.onnx.ml": 1}, 1),
        ([("ai.onnx", 13), ("", 17)], {"": 17}, 1),
        ([("", 17)], {"": 17}, 0),
    ],
)
def test_dedupe_opsets(opsets: list[tuple[str, int]], kept: dict[str, int], dropped: int) -> None:
    model = helper.make_model(
        helper.make_graph([], "g", [], []),
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
    )
    assert dedupe_opsets(model) == dropped
    assert {imp.domain: imp.version for imp in model.opset_import} == kept


def test_new_ops_counts_what_the_quantiser_added(tmp_path: Path) -> None:
    before = onnx.load_model(str(matmul_classifier(tmp_path / "m.onnx")))
    after = onnx.ModelProto()
    after.CopyFrom(before)
    after.graph.node.append(helper.make_node("MatMulInteger", ["a", "b"], ["c"]))
    after.graph.node.append(helper.make_node("MatMulInteger", ["a", "b"], ["d"]))
    assert new_ops(before, after) == {"MatMulInteger": 2}
