"""The model fleet of the many-models benchmark: N small classifiers of mixed kinds and sizes.

* ``onnx``: a random-weight MLP classifier (``input`` FP32 [-1, F] -> ``probabilities`` FP32
  [-1, 2]); its hidden width sets its size, log-uniform between ``ONNX_MIN_BYTES`` and
  ``ONNX_MAX_BYTES`` (model sizes in a real fleet are heavy-tailed: many small, a few large).
* ``sklearn``: a scikit-learn LogisticRegression or RandomForest (skops files, never pickle).
* ``xgboost``: an XGBoost classifier (UBJSON), 10 to 150 trees.

Everything is seeded: the same ``n`` and ``seed`` give the same fleet, sizes and request bodies.
Zipf ranks are assigned by a seeded shuffle, so popularity is independent of kind and size.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import orjson
from onnx import TensorProto, helper, numpy_helper

ONNX_MIN_BYTES = 20_000
ONNX_MAX_BYTES = 6_000_000
KIND_WEIGHTS = {"onnx": 0.6, "sklearn": 0.2, "xgboost": 0.2}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the fleet: its name, kind, feature count and the size it aims at."""

    name: str
    kind: str
    features: int
    target_bytes: int
    seed: int

    def body(self) -> bytes:
        """The V2 JSON request every load generator sends to this model (one row)."""
        row = np.random.default_rng(self.seed + 1).standard_normal(self.features)
        doc = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, self.features],
                    "datatype": "FP32",
                    "data": [round(float(v), 4) for v in row],
                }
            ]
        }
        return orjson.dumps(doc)


def fleet(n: int, seed: int = 7) -> list[ModelSpec]:
    """``n`` model specs, names ``m000`` ... in Zipf-rank order (``m000`` is the most popular)."""
    rng = random.Random(seed)
    kinds = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()), k=n)
    specs = []
    for i, kind in enumerate(kinds):
        log_size = rng.uniform(math.log(ONNX_MIN_BYTES), math.log(ONNX_MAX_BYTES))
        specs.append(
            ModelSpec(
                name="",
                kind=kind,
                features=rng.choice([8, 16, 32, 64]),
                target_bytes=int(math.exp(log_size)),
                seed=seed * 1000 + i,
            )
        )
    rng.shuffle(specs)  # rank is independent of kind and size
    return [
        ModelSpec(f"m{rank:03d}", s.kind, s.features, s.target_bytes, s.seed)
        for rank, s in enumerate(specs)
    ]


def zipf_weights(n: int, s: float) -> list[float]:
    """P(rank k) proportional to 1 / k^s, k = 1..n."""
    raw = [1.0 / (k**s) for k in range(1, n + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def build(spec: ModelSpec, directory: Path) -> tuple[object, dict[str, np.ndarray]]:
    """The object to push (an .onnx path or a fitted estimator) and a sample input."""
    sample = {"input": np.zeros((1, spec.features), dtype=np.float32)}
    if spec.kind == "onnx":
        return onnx_mlp(directory / f"{spec.name}.onnx", spec), sample
    x, y = _training_data(spec)
    if spec.kind == "sklearn":
        return _sklearn(spec, x, y), {"input": x[:1]}
    return _xgboost(spec, x, y), {"input": x[:1]}


def onnx_mlp(path: Path, spec: ModelSpec) -> Path:
    """A random MLP classifier: softmax(relu(x W1 + b1) W2 + b2), about ``target_bytes``."""
    rng = np.random.default_rng(spec.seed)
    hidden = max(8, spec.target_bytes // (4 * (spec.features + 3)))
    w1 = rng.standard_normal((spec.features, hidden), dtype=np.float32) * 0.1
    b1 = rng.standard_normal(hidden, dtype=np.float32) * 0.1
    w2 = rng.standard_normal((hidden, 2), dtype=np.float32) * 0.1
    b2 = np.zeros(2, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "W1", "B1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "W2", "B2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        spec.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", spec.features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(w1, "W1"),
            numpy_helper.from_array(b1, "B1"),
            numpy_helper.from_array(w2, "W2"),
            numpy_helper.from_array(b2, "B2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _training_data(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    x = rng.standard_normal((400, spec.features)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.standard_normal(400) * 0.3 > 0).astype(np.int64)
    return x, y


def _sklearn(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> object:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if spec.target_bytes < 200_000:
        return LogisticRegression(max_iter=200).fit(x, y)
    trees = int(min(max(spec.target_bytes // 60_000, 5), 20))
    return RandomForestClassifier(n_estimators=trees, max_depth=6, random_state=0).fit(x, y)


def _xgboost(spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> object:
    import xgboost

    trees = int(min(max(spec.target_bytes // 20_000, 10), 150))
    model = xgboost.XGBClassifier(n_estimators=trees, max_depth=4, n_jobs=1, random_state=0)
    return model.fit(x, y)
