"""Metrics of a real ``serve --workers 2``, read directly and through a real Prometheus server.

The model sleeps as many milliseconds as its input says, so each request's latency falls in a
known histogram bucket: the p99 that Prometheus computes with ``histogram_quantile`` can then be
compared with the same computation over the latencies the client measured.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest

from modelyard.monitoring.metrics import LATENCY_BUCKETS
from modelyard.registry.registry import Registry
from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.integration.conftest import service_missing
from tests.serverproc import ServerProcess, start_server

pytestmark = pytest.mark.integration

WAIT_S = 60.0
#: Requests per model: (sleep ms, how many). 120 ms and 600 ms sit well inside their buckets
#: ((0.1, 0.25] and (0.5, 1]), so a client on a busy machine still sees the same buckets.
TRAFFIC = {"alpha": [(120, 60)], "beta": [(120, 45), (600, 5)]}
_READY = re.compile(r"modelyard ready pid=(\d+)")


class SleepModel(PythonModel):
    """x FP32 [-1, 1] -> y = x, after sleeping max(x) milliseconds (the warm-up row is 0)."""

    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 1)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 1)),),
    )

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["x"], dtype=np.float32)
        time.sleep(float(x.max(initial=0.0)) / 1000.0)
        return {"y": x}


def body(ms: int) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [ms]}]}


def ready_pids(server: ServerProcess) -> set[int]:
    return {int(m.group(1)) for line in list(server.lines) if (m := _READY.search(line))}


def answers(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.base_url}/v2/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    reg = Registry(tmp_path / "reg")
    for name in TRAFFIC:
        reg.push(SleepModel(), name=name)
    reg.close()
    proc = start_server(tmp_path / "reg", "--workers", "2", "--preload", ",".join(TRAFFIC))
    try:
        proc.wait_for(lambda: len(ready_pids(proc)) >= 2, WAIT_S)
        # A worker prints "ready" just before its HTTP server listens: wait for the port.
        proc.wait_for(lambda: answers(proc), WAIT_S)
        yield proc
    finally:
        assert proc.terminate() == 0, proc.log()


def send_traffic(server: ServerProcess) -> dict[str, list[float]]:
    """Every request on a new connection, so the kernel spreads them over both workers; at most
    4 at once, so that no worker queues them (4 inference threads each). Returns the
    client-side latencies per model."""
    jobs = [(name, ms) for name, mix in TRAFFIC.items() for ms, n in mix for _ in range(n)]

    def call(job: tuple[str, int]) -> tuple[str, float, str]:
        name, ms = job
        payload = json.dumps(body(ms))
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        try:
            conn.request("POST", f"/v2/models/{name}/infer", payload)
            response = conn.getresponse()
            text = response.read()
        finally:
            conn.close()
        seconds = time.perf_counter() - started
        assert response.status == 200, text
        return name, seconds, response.headers["x-request-id"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, jobs))
    workers = {request_id[:16] for _, _, request_id in results}  # per-process id prefix
    assert len(workers) == 2, "both workers must have served requests"
    latencies: dict[str, list[float]] = {name: [] for name in TRAFFIC}
    for name, seconds, _ in results:
        latencies[name].append(seconds)
    return latencies


def histogram_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile over (upper bound, cumulative count), +Inf last."""
    total = cumulative[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("unreachable")


def client_p99(latencies: list[float]) -> float:
    """The p99 Prometheus would compute had it observed the client's latencies."""
    bounds = [*LATENCY_BUCKETS, math.inf]
    cumulative = [(b, float(sum(1 for x in latencies if x <= b))) for b in bounds]
    return histogram_quantile(0.99, cumulative)


def scrape(server: ServerProcess) -> str:
    response = httpx.get(f"{server.base_url}/metrics", timeout=30)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def server_p99(text: str, model: str) -> float:
    name = "modelyard_request_duration_seconds_bucket"
    cumulative: list[tuple[float, float]] = []
    for bound in [*LATENCY_BUCKETS, math.inf]:
        le = "+Inf" if math.isinf(bound) else repr(float(bound))
        count = sample(text, name, model=model, le=le)
        assert count is not None, (model, le)
        cumulative.append((bound, count))
    return histogram_quantile(0.99, cumulative)


# ---- /metrics of the workers, without Prometheus ---------------------------------------------
def test_workers_export_one_sum_and_a_restarted_worker_keeps_the_counts(
    server: ServerProcess,
) -> None:
    latencies = send_traffic(server)
    sent = {model: sum(n for _, n in mix) for model, mix in TRAFFIC.items()}

    def counted() -> dict[str, float | None]:
        text = scrape(server)
        return {m: sample(text, "modelyard_requests_total", model=m, code="OK") for m in sent}

    # Each worker flushes its request counts once a second (and the scraped one at once).
    server.wait_for(lambda: counted() == sent, WAIT_S)
    text = scrape(server)
    for model in TRAFFIC:
        # The client sees at least what the server measured; it may see more (a connection
        # set-up or a scheduling hiccup on a loaded machine lands a request in a later bucket).
        assert server_p99(text, model) <= client_p99(latencies[model]) * 1.05
    assert 0.5 < server_p99(text, "beta") <= 1.0 and 0.1 < server_p99(text, "alpha") <= 0.25
    pids = ready_pids(server)
    for pid in pids:
        assert sample(text, "modelyard_process_resident_memory_bytes", pid=str(pid))

    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    server.wait_for(lambda: len(ready_pids(server) - pids) >= 1, WAIT_S)
    text = scrape(server)
    assert sample(text, "modelyard_requests_total", model="alpha", code="OK") == 60
    assert sample(text, "modelyard_process_resident_memory_bytes", pid=str(victim)) is None
    assert sample(text, "modelyard_loaded_models") == 2 * len(TRAFFIC)  # 2 live workers


# ---- a real Prometheus -------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        r.raise_for_status()
        doc = r.json()
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def by_model(self, promql: str) -> dict[str, float]:
        return {row["metric"]["model"]: float(row["value"][1]) for row in self.query(promql)}

    def poll(self, what: str, check: Any, timeout: float = WAIT_S) -> Any:
        """Poll until ``check()`` returns something truthy (targets take seconds to come up)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except httpx.HTTPError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus: {what} not reached in {timeout} s")
            time.sleep(0.2)  # polling an external process, not synchronising our own code


@pytest.fixture
def prometheus(tmp_path: Path, server: ServerProcess) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        service_missing("the prometheus binary is not installed (Debian package prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: modelyard\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['{server.http_url}']\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        prom.poll("readiness", lambda: httpx.get(f"{prom.url}/-/ready", timeout=5).is_success)
        yield prom
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_prometheus_sees_the_request_counts_and_p99_per_model(
    server: ServerProcess, prometheus: Prometheus
) -> None:
    def target_up() -> bool:
        r = httpx.get(f"{prometheus.url}/api/v1/targets", timeout=5).json()
        return any(t["health"] == "up" for t in r["data"]["activeTargets"])

    prometheus.poll("the ModelYard target up", target_up)
    latencies = send_traffic(server)
    httpx.post(f"{server.base_url}/v2/models/nosuch/infer", json=body(0), timeout=30)
    sent = {model: float(sum(n for _, n in mix)) for model, mix in TRAFFIC.items()}

    counts = 'sum by (model) (modelyard_requests_total{code="OK"})'
    prometheus.poll("the request counts", lambda: prometheus.by_model(counts) == sent)
    text = scrape(server)  # the counters no longer move: Prometheus saw this state too
    p99 = prometheus.by_model(
        "histogram_quantile(0.99, sum by (model, le) (modelyard_request_duration_seconds_bucket))"
    )
    for model in TRAFFIC:
        # The client sees at least what the server measured; it may see more (a connection
        # set-up or a scheduling hiccup on a loaded machine lands a request in a later bucket).
        assert p99[model] <= client_p99(latencies[model]) * 1.05
        assert p99[model] == pytest.approx(server_p99(text, model), rel=1e-9)
    assert 0.5 < p99["beta"] <= 1.0 and 0.1 < p99["alpha"] <= 0.25
    assert Counter(r["metric"]["model"] for r in prometheus.query("modelyard_requests_total")) == {
        "alpha": 1,
        "beta": 1,
        "_unknown": 1,
    }
