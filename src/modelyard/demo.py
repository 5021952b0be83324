"""Demo models, trained on first use so ``modelyard serve --demo`` has something to serve.

* ``iris`` — LogisticRegression on the iris data, converted to ONNX: ``input`` FP32 [-1, 4] ->
  ``label`` INT64 [-1], ``probabilities`` FP32 [-1, 3].
* ``diabetes`` — a native scikit-learn Ridge regressor (skops): ``input`` FP64 [-1, 10] ->
  ``prediction`` FP64 [-1] (disease progression one year later, roughly 25..350).
* ``sentiment`` — TfidfVectorizer + LogisticRegression on made-up sentences (skops):
  ``text`` BYTES [-1] -> ``label`` BYTES [-1] (``positive``/``negative``), ``probabilities``.
* ``simple`` — Triton's classic add/sub model: ``INPUT0``, ``INPUT1`` INT32 [-1, 16] ->
  ``OUTPUT0`` = sum, ``OUTPUT1`` = difference, so stock tritonclient examples work unchanged.

The data come with scikit-learn (no download). Each model gets alias ``production``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.registry.registry import ModelVersion, Registry
from modelyard.types import Datatype, Signature, TensorSpec

DEMO_MODELS = ("iris", "diabetes", "sentiment", "simple")
DEMO_ALIAS = "production"

IRIS_SIGNATURE = Signature(
    inputs=(TensorSpec(name="input", datatype=Datatype.FP32, shape=(-1, 4)),),
    outputs=(
        TensorSpec(name="label", datatype=Datatype.INT64, shape=(-1,)),
        TensorSpec(name="probabilities", datatype=Datatype.FP32, shape=(-1, 3)),
    ),
)
SIMPLE_SIGNATURE = Signature(
    inputs=(
        TensorSpec(name="INPUT0", datatype=Datatype.INT32, shape=(-1, 16)),
        TensorSpec(name="INPUT1", datatype=Datatype.INT32, shape=(-1, 16)),
    ),
    outputs=(
        TensorSpec(name="OUTPUT0", datatype=Datatype.INT32, shape=(-1, 16)),
        TensorSpec(name="OUTPUT1", datatype=Datatype.INT32, shape=(-1, 16)),
    ),
)

_POSITIVE = (
    "I love this product, it works great",
    "Absolutely wonderful experience, highly recommended",
    "The service was fast and friendly",
    "Great value for the money",
    "This is the best purchase I have made this year",
    "Excellent quality and beautiful design",
    "I am very happy with the result",
    "Fantastic support team, they solved my problem",
    "Works perfectly, exactly as described",
    "Delightful, pleasant and easy to use",
    "Superb performance, I would buy it again",
    "The staff were kind and helpful",
    "Amazing food and a lovely atmosphere",
    "Really good, fast delivery and nice packaging",
    "I enjoyed every minute, a great time",
    "Brilliant idea, well made and reliable",
    "Happy customer, everything was perfect",
    "Nice and comfortable, love it",
)
_NEGATIVE = (
    "I hate this product, it broke after a day",
    "Terrible experience, would not recommend",
    "The service was slow and rude",
    "A waste of money",
    "This is the worst purchase I have made this year",
    "Poor quality and ugly design",
    "I am very disappointed with the result",
    "Awful support team, they ignored my problem",
    "Does not work, nothing like described",
    "Annoying, unpleasant and hard to use",
    "Horrible performance, I want a refund",
    "The staff were unfriendly and unhelpful",
    "Bad food and a noisy atmosphere",
    "Really bad, late delivery and damaged packaging",
    "I regretted every minute, a miserable time",
    "Stupid idea, badly made and unreliable",
    "Angry customer, everything was wrong",
    "Uncomfortable and cheap, hate it",
)


def ensure_demo_models(registry: Registry) -> list[str]:
    """Create the demo models that do not exist yet (each with alias ``production``) and
    return all demo model names. Models already in the registry are left as they are, so
    calling this at every start is cheap after the first."""
    existing = {info.name for info in registry.list_models()}
    builders: dict[str, Callable[[Registry, Path], ModelVersion]] = {
        "iris": _push_iris,
        "diabetes": _push_diabetes,
        "sentiment": _push_sentiment,
        "simple": _push_simple,
    }
    for name in DEMO_MODELS:
        if name not in existing:
            with tempfile.TemporaryDirectory(prefix=f"modelyard-demo-{name}-") as tmp:
                builders[name](registry, Path(tmp))
    return list(DEMO_MODELS)


def _metadata(description: str, **extra: Any) -> dict[str, Any]:
    return {"demo": True, "description": description, **extra}


def _push_iris(registry: Registry, tmp: Path) -> ModelVersion:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from modelyard.convert import to_onnx

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    converted = to_onnx(model, x[:20], name="iris")
    return registry.push(
        converted.save(tmp / "iris.onnx"),
        name="iris",
        signature=IRIS_SIGNATURE,
        alias=DEMO_ALIAS,
        warmup={"input": x[:1]},
        metadata=_metadata(
            "LogisticRegression on scikit-learn's iris data, converted to ONNX",
            classes=["setosa", "versicolor", "virginica"],
            train_accuracy=float(model.score(x, y)),
            conversion=dict(converted.metadata),
        ),
    )


def _push_diabetes(registry: Registry, tmp: Path) -> ModelVersion:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.1).fit(x, y)
    return registry.push(
        model,
        name="diabetes",
        sample=x[:5],
        alias=DEMO_ALIAS,
        metadata=_metadata(
            "Ridge regression on scikit-learn's diabetes data (native scikit-learn, skops)",
            train_r2=float(model.score(x, y)),
        ),
    )


def _push_sentiment(registry: Registry, tmp: Path) -> ModelVersion:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = np.asarray(_POSITIVE + _NEGATIVE, dtype=object)
    labels = np.asarray(["positive"] * len(_POSITIVE) + ["negative"] * len(_NEGATIVE))
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000, C=10.0))
    model.fit(texts, labels)
    return registry.push(
        model,
        name="sentiment",
        sample=texts[:2],
        alias=DEMO_ALIAS,
        metadata=_metadata(
            "TF-IDF + LogisticRegression on a few dozen made-up review sentences (skops)",
            train_accuracy=float(model.score(texts, labels)),
        ),
    )


def _push_simple(registry: Registry, tmp: Path) -> ModelVersion:
    path = tmp / "simple.onnx"
    path.write_bytes(simple_model_bytes())
    return registry.push(
        path,
        name="simple",
        signature=SIMPLE_SIGNATURE,
        alias=DEMO_ALIAS,
        metadata=_metadata(
            "Triton's classic example: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1"
        ),
    )


def simple_model_bytes() -> bytes:
    """Triton's ``simple`` as ONNX: sum and difference of two INT32 [-1, 16] tensors.

    The tests build their ``simple`` (tests/testmodels.py) with this function too.
    """
    import onnx
    from onnx import TensorProto, helper

    t = TensorProto.INT32
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [
            helper.make_tensor_value_info("INPUT0", t, ["batch", 16]),
            helper.make_tensor_value_info("INPUT1", t, ["batch", 16]),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", t, ["batch", 16]),
            helper.make_tensor_value_info("OUTPUT1", t, ["batch", 16]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data
