"""ONNX Runtime sessions of this package's own, apart from any serving runtime: built with the
serving options (threads, graph optimisation, providers), optionally with ORT's profiler on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelyard.errors import FailedPreconditionError, InferenceError
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes.onnx import ORT_INPUT_DTYPES, choose_providers, session_options
from modelyard.types import Array


def open_session(
    model: bytes | Path, options: RuntimeOptions, *, profile_prefix: Path | None = None
) -> ort.InferenceSession:
    """A CPU-or-better session over a serialised model or a model file (external data next to
    it); ``profile_prefix`` turns ORT's profiler on, writing ``<prefix>_<timestamp>.json``."""
    so = session_options(options)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    source: Any = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(
            source, sess_options=so, providers=choose_providers(options.execution_providers)
        )
    except Exception as exc:  # ORT raises its own exception types from C++
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FailedPreconditionError(f"onnx: cannot create a session: {first}") from exc


def feed_of(session: ort.InferenceSession, inputs: Mapping[str, Array]) -> dict[str, Array]:
    """The session's inputs from ``inputs``, cast to the graph's element types (strings as
    ``str`` objects)."""
    feed: dict[str, Array] = {}
    for arg in session.get_inputs():
        if arg.name not in inputs:
            raise FailedPreconditionError(f"onnx: the sample lacks the graph input '{arg.name}'")
        arr = np.asarray(inputs[arg.name])
        want = ORT_INPUT_DTYPES.get(arg.type, np.dtype(object))
        if want.kind == "O":
            flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.flat]
            strings = np.empty(len(flat), dtype=object)
            strings[:] = flat
            feed[arg.name] = strings.reshape(arr.shape)
        else:
            feed[arg.name] = arr if arr.dtype == want else arr.astype(want)
    return feed


def run_session(session: ort.InferenceSession, inputs: Mapping[str, Array]) -> dict[str, Array]:
    """Every tensor output of the session on ``inputs``."""
    names = [o.name for o in session.get_outputs() if str(o.type).startswith("tensor(")]
    feed = feed_of(session, inputs)
    try:
        results = session.run(names, feed)
    except Exception as exc:
        raise InferenceError(f"onnx: run failed: {type(exc).__name__}: {exc}") from exc
    return {name: np.asarray(value) for name, value in zip(names, results, strict=True)}
