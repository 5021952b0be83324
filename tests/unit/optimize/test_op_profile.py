"""Operator time from ORT's profiler: aggregation from a recorded profile, and a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import FailedPreconditionError
from modelyard.optimize.op_profile import aggregate_ops, profile_ops, read_profile
from modelyard.runtime import RuntimeOptions
from tests.unit.optimize.models import FEATURES, matmul_classifier

# Recorded from ORT 1.32 on the MatMul classifier: three runs (args trimmed to the op name).
SAMPLE = Path(__file__).with_name("ort_profile_sample.json")


def _events() -> list[dict[str, Any]]:
    return read_profile(SAMPLE)


def test_all_runs() -> None:
    ops = aggregate_ops(_events(), batch_size=2)
    assert ops.runs == 3
    assert ops.batch_size == 2
    assert ops.total_us == 330.0
    assert [(o.op_type, o.calls, o.total_us) for o in ops.ops] == [
        ("MatMul", 9, 157.0),
        ("Softmax", 3, 92.0),
        ("ArgMax", 3, 45.0),
        ("Relu", 6, 36.0),
    ]
    assert sum(o.share for o in ops.ops) == pytest.approx(1.0)


def test_warmup_runs_are_left_out() -> None:
    ops = aggregate_ops(_events(), skip_runs=1)
    assert ops.runs == 2
    assert [(o.op_type, o.calls, o.total_us) for o in ops.ops] == [
        ("MatMul", 6, 58.0),
        ("Relu", 4, 19.0),
        ("ArgMax", 2, 14.0),
        ("Softmax", 2, 10.0),
    ]
    assert ops.ops[0].share == pytest.approx(58 / 101)


def test_top_keeps_the_largest_and_counts_the_rest() -> None:
    ops = aggregate_ops(_events(), top=2)
    assert [o.op_type for o in ops.ops] == ["MatMul", "Softmax"]
    assert ops.other_types == 2
    assert ops.as_dict()["ops"][0] == {
        "op_type": "MatMul",
        "calls": 9,
        "total_us": 157.0,
        "share": pytest.approx(157 / 330),
    }


def test_fences_and_session_events_are_not_kernel_time() -> None:
    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        {
            "cat": "Node",
            "name": "mm_fence_before",
            "ts": 1,
            "dur": 50,
            "args": {"op_name": "MatMul"},
        },
        {"cat": "Node", "name": "mm_kernel_time", "ts": 2, "dur": 7, "args": {"op_name": "MatMul"}},
        {"cat": "Node", "name": "x_kernel_time", "ts": 3, "dur": 1, "args": {}},
    ]
    ops = aggregate_ops(events)
    assert [(o.op_type, o.total_us) for o in ops.ops] == [("MatMul", 7.0), ("?", 1.0)]


def test_empty_profile() -> None:
    ops = aggregate_ops([], skip_runs=2)
    assert (ops.runs, ops.total_us, ops.ops, ops.other_types) == (0, 0.0, (), 0)


def test_read_profile_accepts_a_wrapped_list_and_refuses_junk(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"traceEvents": _events()}))
    assert len(read_profile(wrapped)) == len(_events())
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(FailedPreconditionError, match="cannot read the ORT profile"):
        read_profile(junk)


def test_a_real_profiling_session(tmp_path: Path) -> None:
    model = matmul_classifier(tmp_path / "model.onnx")
    inputs = {"input": np.ones((4, FEATURES), dtype=np.float32)}
    ops = profile_ops(model, inputs, RuntimeOptions(), runs=5, warmup_runs=1, batch_size=4)
    assert ops.runs == 5
    assert "MatMul" in {o.op_type for o in ops.ops}
    assert all(o.calls % 5 == 0 for o in ops.ops)  # every kernel once per counted run
    assert sum(o.share for o in ops.ops) == pytest.approx(1.0)
    assert list(tmp_path.iterdir()) == [model]  # the trace file went with its temp dir
