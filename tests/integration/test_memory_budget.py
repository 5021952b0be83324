"""The model cache's byte budget holds in RSS under churn: a real server cycles through models
totalling 4x its budget, in random order, and its resident memory stays within
budget + a fixed overhead all along (sampled every few milliseconds, not just between requests).

The overhead, stated: ``OVERHEAD_BYTES`` (ONNX Runtime's one-time set-up, allocator slack,
thread stacks) plus ``LOAD_PEAKS`` x the model size (while a model loads, its file's bytes are
parsed into a protobuf and copied into tensors before the parse buffer is freed, and the model
it replaces is still in RAM until the load has made room).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelyard.registry import Registry
from tests.serverproc import ServerProcess, start_server

pytestmark = pytest.mark.integration

MIB = 2**20
N_FEATURES = 64
MODEL_BYTES = 8 * MIB
N_MODELS = 12
BUDGET = N_MODELS * MODEL_BYTES // 4  # the models total 4x the budget
OVERHEAD_BYTES = 48 * MIB
LOAD_PEAKS = 2


def big_model(path: Path, seed: int, weight_bytes: int = MODEL_BYTES) -> Path:
    """x FP32 [-1, 64] -> y FP32 [-1, 1]: sum(x @ W), W random (incompressible, all resident)."""
    width = weight_bytes // (4 * N_FEATURES)
    weights = np.random.default_rng(seed).standard_normal((N_FEATURES, width), dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("MatMul", ["h", "ones"], ["y"]),
        ],
        f"big{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(np.ones((width, 1), dtype=np.float32), "ones"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler:
    """Samples a process's RSS on a thread until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_of(self.pid))
            self._stop.wait(0.002)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("membudget")
    with Registry(root / "reg") as reg:
        for i in range(N_MODELS):
            reg.push(big_model(root / f"m{i}.onnx", seed=i), name=f"m{i}")
            (root / f"m{i}.onnx").unlink()
    proc = start_server(
        root / "reg", env={"MODELYARD_CACHE_BYTES": str(BUDGET), "MODELYARD_LOG_LEVEL": "warning"}
    )
    yield proc
    assert proc.terminate() == 0, proc.log()


def test_rss_stays_within_budget_plus_overhead_under_churn(server: ServerProcess) -> None:
    body = {
        "inputs": [
            {"name": "x", "shape": [1, N_FEATURES], "datatype": "FP32", "data": [0.5] * N_FEATURES}
        ]
    }
    base = rss_of(server.proc.pid)
    limit = base + BUDGET + OVERHEAD_BYTES + LOAD_PEAKS * MODEL_BYTES
    rng = random.Random(7)
    order = [f"m{i}" for i in range(N_MODELS)] * 2 + [
        f"m{rng.randrange(N_MODELS)}" for _ in range(48)
    ]
    after: list[int] = []
    with (
        httpx.Client(base_url=server.base_url, timeout=60) as client,
        Sampler(server.proc.pid) as s,
    ):
        for name in order:
            r = client.post(f"/v2/models/{name}/infer", json=body)
            assert r.status_code == 200, r.text
            after.append(rss_of(server.proc.pid))
        doc = client.get("/v2/fleet/cache").json()
    report = (
        f"RSS at ready {base / MIB:.0f} MiB, peak {s.peak / MIB:.0f} MiB, limit {limit / MIB:.0f}"
        f" MiB; entries {[(e['model'], e['bytes']) for e in doc['entries']]}; {doc['stats']}"
    )
    assert doc["stats"]["evictions"] >= len(order) // 2, report  # it really churned
    assert doc["bytes_in_use"] <= BUDGET, report
    assert all(e["bytes"] >= MODEL_BYTES for e in doc["entries"]), report  # not under-counted
    assert s.peak <= limit, report
    assert max(after) <= limit, report
