"""Server life cycle against real processes: not ready until preloaded models are warm, and a
SIGTERM while requests are in flight lets every one of them finish before a clean exit.

The slow model (tests/slowmodel.py) blocks on gate files this test creates, so the order of
events is controlled by the test, not by timing. Waiting for a condition polls it with a deadline.
"""

from __future__ import annotations

import concurrent.futures
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from modelyard.registry.registry import Registry
from tests.serverproc import ServerProcess, start_server, wait_until
from tests.slowmodel import SlowModel

pytestmark = pytest.mark.e2e

WAIT_S = 30.0


@pytest.fixture
def slow_registry(tmp_path: Path, gates: Path) -> Path:
    root = tmp_path / "registry"
    registry = Registry(root)
    try:
        registry.push(SlowModel(gates), name="slow")
    finally:
        registry.close()
    return root


@pytest.fixture
def stop_server() -> Iterator[list[ServerProcess]]:
    """Servers a test started; killed at teardown if the test left them running."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.terminate(timeout=10)  # reaps it (and releases its log pipe)


def _ready_status(server: ServerProcess) -> int:
    return httpx.get(f"{server.base_url}/v2/health/ready", timeout=5).status_code


def test_not_ready_until_preloaded_model_is_warm(
    slow_registry: Path, gates: Path, stop_server: list[ServerProcess]
) -> None:
    server = start_server(slow_registry, "--preload", "slow", wait_ready=False)
    stop_server.append(server)
    wait_until((gates / "load-started").exists, "the slow model to start loading")

    # Listening, alive, and not ready: the model's load() is blocked on our gate.
    assert httpx.get(f"{server.base_url}/v2/health/live", timeout=5).status_code == 200
    status = _ready_status(server)
    assert status == 503 or 400 <= status < 500, status
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_live()
        assert not client.is_server_ready()
    assert not (gates / "loaded").exists()
    assert "modelyard ready" not in server.log()

    (gates / "release-load").touch()
    wait_until(lambda: _ready_status(server) == 200, "readiness after the preload")
    assert (gates / "loaded").exists()  # ready only once load() has returned
    wait_until(lambda: "modelyard ready" in server.log(), "the ready line")
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_ready()
        assert client.is_model_ready("slow")

    reply = httpx.post(
        f"{server.base_url}/v2/models/slow/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}]},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    assert server.terminate() == 0, server.log()


def _http_infer(base_url: str, value: float) -> float:
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [value]}]}
    reply = httpx.post(f"{base_url}/v2/models/slow/infer", json=body, timeout=WAIT_S)
    assert reply.status_code == 200, reply.text
    return float(reply.json()["outputs"][0]["data"][0])


def _grpc_infer(url: str, value: float) -> float:
    with grpcclient.InferenceServerClient(url) as client:
        inp = grpcclient.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.array([[value]], dtype=np.float32))
        result = client.infer("slow", [inp], client_timeout=WAIT_S)
        return float(result.as_numpy("y")[0, 0])


def test_sigterm_drains_in_flight_requests_and_exits_zero(
    slow_registry: Path, gates: Path, stop_server: list[ServerProcess]
) -> None:
    (gates / "release-load").touch()
    per_protocol = 3
    server = start_server(
        slow_registry,
        "--preload",
        "slow",
        env={"MODELYARD_INFERENCE_THREADS": str(4 * per_protocol)},
    )
    stop_server.append(server)
    values = [float(i + 1) for i in range(2 * per_protocol)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(values)) as pool:
        futures = {
            v: pool.submit(_http_infer, server.base_url, v) for v in values[:per_protocol]
        } | {v: pool.submit(_grpc_infer, server.grpc_url, v) for v in values[per_protocol:]}
        wait_until(
            lambda: all((gates / f"arrived-{v:g}").exists() for v in values),
            "every request to reach the model",
        )
        assert not any(f.done() for f in futures.values())

        server.proc.send_signal(signal.SIGTERM)  # with every request still inside predict()
        wait_until(lambda: "shutting down" in server.log(), "the server to start draining")
        assert server.proc.poll() is None  # still draining: the requests hold it open
        (gates / "release-predict").touch()

        answers = {v: f.result(timeout=WAIT_S) for v, f in futures.items()}
    assert answers == {v: 2 * v for v in values}
    assert server.terminate(timeout=WAIT_S) == 0, server.log()  # exits by itself; this waits
