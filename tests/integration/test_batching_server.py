"""Over a real server: a batched version answers exactly what an unbatched one does."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from modelyard.registry.registry import Registry
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import linear_fp32_model


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("batching")
    reg = Registry(root / "reg")
    model = linear_fp32_model(root / "linear.onnx")
    reg.push(model, name="plain", alias="production")
    reg.push(model, name="batched", alias="production", batching={"max_batch_size": 16})
    reg.close()
    proc = start_server(root / "reg", "--preload", "plain,batched")
    yield proc
    assert proc.terminate() == 0, proc.log()


def infer(client: httpx.Client, model: str, row: np.ndarray) -> list[float]:
    body = {
        "inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": row.tolist()}]
    }
    r = client.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == 200, r.text
    return [float(v) for v in r.json()["outputs"][0]["data"]]


def test_batched_and_unbatched_answers_are_identical(server: ServerProcess) -> None:
    rows = np.random.default_rng(7).normal(size=(200, 20)).astype(np.float32)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        with ThreadPoolExecutor(16) as pool:  # concurrent requests, so batches really form
            batched = list(pool.map(lambda r: infer(client, "batched", r), rows))
            plain = list(pool.map(lambda r: infer(client, "plain", r), rows))
        metrics = client.get("/metrics").text
    assert batched == plain
    # the batched version really coalesced requests: some batches held more than one row
    sizes = [
        line
        for line in metrics.splitlines()
        if line.startswith("modelyard_batch_size_count") and 'model="batched"' in line
    ]
    assert sizes, "no batch-size series for the batched model"
    batches = sum(float(line.rsplit(" ", 1)[1]) for line in sizes)
    assert batches < 200
