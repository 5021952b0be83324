"""`modelyard serve --http-server granian`: real processes keep the whole life cycle.

Ready only once the preloaded model is warm; V2 REST, the official tritonclient HTTP client and
gRPC (same process, same event loop) all work; SIGTERM stops accepting, lets in-flight HTTP and
gRPC requests finish and exits 0; ``--workers 2`` serves from both workers on one port.

The slow model (tests/slowmodel.py) blocks on gate files this test creates, so the order of
events is the test's; every wait polls a condition with a deadline.
"""

from __future__ import annotations

import concurrent.futures
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from modelyard.registry.registry import Registry
from tests.serverproc import ServerProcess, start_server, wait_until
from tests.slowmodel import SlowModel
from tests.testmodels import simple_model

pytestmark = pytest.mark.e2e

GRANIAN = ("--http-server", "granian")
WAIT_S = 30.0
BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]
}
_READY = re.compile(r"modelyard ready pid=(\d+)")


@pytest.fixture
def registry(tmp_path: Path, gates: Path) -> Path:
    """``slow`` (gated by ``gates``) and Triton's ``simple``."""
    root = tmp_path / "registry"
    reg = Registry(root)
    try:
        reg.push(SlowModel(gates), name="slow")
        reg.push(simple_model(tmp_path / "simple.onnx"), name="simple", alias="production")
    finally:
        reg.close()
    return root


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Servers a test started; killed at teardown if the test left them running."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
        server.terminate(timeout=10)


def assert_clean_log(server: ServerProcess) -> None:
    log = server.log()
    assert '"level":"error"' not in log and "Traceback" not in log, log


def ready_status(server: ServerProcess) -> int:
    reply = httpx.get(f"{server.base_url}/v2/health/ready", timeout=5)
    assert reply.headers["server"] == "granian"  # the server the flag asked for
    return reply.status_code


def infer_simple(server: ServerProcess) -> httpx.Response:
    """One V2 REST inference on a fresh connection."""
    reply = httpx.post(f"{server.base_url}/v2/models/simple/infer", json=BODY, timeout=WAIT_S)
    assert reply.status_code == 200, reply.text
    outputs = {o["name"]: o["data"] for o in reply.json()["outputs"]}
    assert outputs == {"OUTPUT0": list(range(1, 17)), "OUTPUT1": list(range(-1, 15))}
    return reply


def grpc_simple(server: ServerProcess) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), -3, dtype=np.int32)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        inputs = [
            grpcclient.InferInput("INPUT0", [1, 16], "INT32").set_data_from_numpy(a),
            grpcclient.InferInput("INPUT1", [1, 16], "INT32").set_data_from_numpy(b),
        ]
        result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_ready_after_preload_then_rest_tritonclient_and_grpc_work(
    registry: Path, gates: Path, servers: list[ServerProcess]
) -> None:
    server = start_server(registry, *GRANIAN, "--preload", "slow", wait_ready=False)
    servers.append(server)
    wait_until((gates / "load-started").exists, "the slow model to start loading")

    # Listening and alive, not ready: the preload is blocked on our gate.
    assert httpx.get(f"{server.base_url}/v2/health/live", timeout=5).status_code == 200
    status = ready_status(server)
    assert status == 503 or 400 <= status < 500, status  # as with uvicorn (test_lifecycle.py)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_live() and not client.is_server_ready()
    assert "modelyard ready" not in server.log()

    (gates / "release-load").touch()
    wait_until(lambda: ready_status(server) == 200, "readiness after the preload")
    assert (gates / "loaded").exists()
    wait_until(lambda: "modelyard ready" in server.log(), "the ready line")

    infer_simple(server)
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert client.is_server_ready() and client.is_model_ready("slow")
        a = np.arange(32, dtype=np.int32).reshape(2, 16)
        b = np.full((2, 16), 5, dtype=np.int32)
        inputs = [
            httpclient.InferInput("INPUT0", [2, 16], "INT32"),
            httpclient.InferInput("INPUT1", [2, 16], "INT32"),
        ]
        inputs[0].set_data_from_numpy(a, binary_data=False)
        inputs[1].set_data_from_numpy(b, binary_data=True)
        outputs = [
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
            httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
        ]
        result = client.infer("simple", inputs, outputs=outputs, request_id="g-1")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        assert result.get_response()["id"] == "g-1"
    finally:
        client.close()
    grpc_simple(server)

    assert server.terminate() == 0, server.log()
    assert_clean_log(server)


def _http_slow(base_url: str, value: float) -> tuple[float, str | None]:
    body = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [value]}]}
    reply = httpx.post(f"{base_url}/v2/models/slow/infer", json=body, timeout=WAIT_S)
    assert reply.status_code == 200, reply.text
    return float(reply.json()["outputs"][0]["data"][0]), reply.headers.get("connection")


def _grpc_slow(url: str, value: float) -> float:
    with grpcclient.InferenceServerClient(url) as client:
        inp = grpcclient.InferInput("x", [1, 1], "FP32")
        inp.set_data_from_numpy(np.array([[value]], dtype=np.float32))
        result = client.infer("slow", [inp], client_timeout=WAIT_S)
        return float(result.as_numpy("y")[0, 0])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_drains_in_flight_http_and_grpc_and_exits_zero(
    registry: Path, gates: Path, servers: list[ServerProcess]
) -> None:
    (gates / "release-load").touch()
    per_protocol = 2
    server = start_server(
        registry,
        *GRANIAN,
        "--preload",
        "slow",
        env={"MODELYARD_INFERENCE_THREADS": str(4 * per_protocol)},
    )
    servers.append(server)
    http_values = [float(i + 1) for i in range(per_protocol)]
    grpc_values = [float(i + 1 + per_protocol) for i in range(per_protocol)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * per_protocol) as pool:
        http_calls = {v: pool.submit(_http_slow, server.base_url, v) for v in http_values}
        grpc_calls = {v: pool.submit(_grpc_slow, server.grpc_url, v) for v in grpc_values}
        wait_until(
            lambda: all((gates / f"arrived-{v:g}").exists() for v in http_values + grpc_values),
            "every request to reach the model",
        )

        server.proc.send_signal(signal.SIGTERM)  # every request is still inside predict()
        wait_until(lambda: "shutting down" in server.log(), "the server to start draining")
        wait_until(lambda: _refused(server.http_port), "granian to stop accepting")
        assert server.proc.poll() is None  # still draining: the requests hold it open
        assert not any(f.done() for f in [*http_calls.values(), *grpc_calls.values()])
        (gates / "release-predict").touch()

        http_answers = {v: f.result(timeout=WAIT_S) for v, f in http_calls.items()}
        grpc_answers = {v: f.result(timeout=WAIT_S) for v, f in grpc_calls.items()}
    # each answer is right, and HTTP ones tell the client to drop the connection
    assert http_answers == {v: (2 * v, "close") for v in http_values}
    assert grpc_answers == {v: 2 * v for v in grpc_values}
    assert server.terminate(timeout=WAIT_S) == 0, server.log()
    assert_clean_log(server)


def test_two_workers_share_the_port(registry: Path, servers: list[ServerProcess]) -> None:
    server = start_server(registry, *GRANIAN, "--workers", "2", "--preload", "simple")
    servers.append(server)

    def pids() -> set[str]:
        return {m.group(1) for line in list(server.lines) if (m := _READY.search(line))}

    server.wait_for(lambda: len(pids()) == 2)
    served_by: set[str] = set()
    for _ in range(200):  # a fresh connection each: the kernel spreads them over the workers
        reply = infer_simple(server)
        assert reply.headers["server"] == "granian"
        served_by.add(reply.headers["x-request-id"][:16])  # a per-process prefix
        if len(served_by) == 2:
            break
    assert len(served_by) == 2
    grpc_simple(server)
    assert server.terminate() == 0, server.log()
    assert_clean_log(server)
