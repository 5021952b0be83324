"""The benchmark's models, built in code so every system serves the same one.

* ``logreg``: scikit-learn LogisticRegression on 20 features, converted with skl2onnx
  (``zipmap=False``): input ``input`` FP32 [-1, 20]; outputs ``label`` INT64 [-1] and
  ``probabilities`` FP32 [-1, 2]. The headline point.
* ``forest``: RandomForestClassifier with 100 trees on the same data (a heavier model).

The fitted estimators are deterministic (fixed seed), so a peer's own venv can refit the same model
with its own scikit-learn (``python bench/models.py --joblib DIR``) instead of unpickling a file
written by another version. This file imports only numpy and scikit-learn at module level.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 20
SEED = 20261122
MODELS = ("logreg", "forest")


def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(2000, N_FEATURES)).astype(np.float32)
    w = rng.normal(size=N_FEATURES)
    y = (x @ w + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.int64)
    return x, y


def fit(name: str) -> Any:
    """The fitted scikit-learn estimator called ``name``."""
    x, y = training_data()
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000).fit(x, y)
    if name == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=100, max_depth=10, random_state=SEED).fit(x, y)
    raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)}")


def build_onnx(name: str, directory: Path) -> Path:
    """``directory/<name>.onnx`` (input ``input`` FP32 [-1, 20]); rebuilt only when missing."""
    path = directory / f"{name}.onnx"
    if path.exists():
        return path
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        fit(name),
        initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(onx.SerializeToString())
    tmp.replace(path)
    return path


def build_joblib(name: str, directory: Path) -> Path:
    """``directory/<name>.joblib`` fitted by *this* interpreter's scikit-learn (for MLServer)."""
    import joblib

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.joblib"
    joblib.dump(fit(name), path)
    return path


def request_row() -> list[float]:
    """The one row of 20 floats every request carries (fixed, so responses are comparable)."""
    return [round(((i * 7919) % 1000) / 1000.0 - 0.5, 3) for i in range(N_FEATURES)]


def v2_request() -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "input", "shape": [1, N_FEATURES], "datatype": "FP32", "data": request_row()}
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joblib", type=Path, help="write <model>.joblib files into this dir")
    parser.add_argument("--onnx", type=Path, help="write <model>.onnx files into this dir")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    for name in args.models.split(","):
        if args.joblib:
            print(build_joblib(name, args.joblib))
        if args.onnx:
            print(build_onnx(name, args.onnx))


if __name__ == "__main__":
    main()
