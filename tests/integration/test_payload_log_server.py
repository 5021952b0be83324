"""Payload logging against real processes: a ``modelyard serve`` writing JSONL (flushed on
SIGTERM), and the Redis-stream sink against a real ``redis-server`` started on a free port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.app import build_app
from modelyard.monitoring.payload_log import PayloadLogger, PayloadRates, is_sampled
from modelyard.monitoring.payload_sinks import RedisSink, read_jsonl
from modelyard.registry.registry import Registry
from modelyard.settings import Settings
from tests.integration.conftest import service_missing
from tests.serverproc import start_server
from tests.testmodels import simple_model
from tests.unit.monitoring.test_payload_log import event_for

pytestmark = pytest.mark.integration

RATE = 0.3


def require_wiring(tmp_path: Path) -> None:
    """The server runs payload logging only once monitoring/wiring.py calls drift_wiring."""
    app = build_app(Settings(registry=str(tmp_path / "probe"), payload_log=str(tmp_path / "p")))
    try:
        wired = "payload_log" in app.extras
    finally:
        app.close()
    if not wired:
        service_missing("monitoring.wiring.install does not call drift_wiring.install yet")


def infer_body(i: int, request_id: str) -> dict[str, object]:
    return {
        "id": request_id,
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [i] * 16},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16},
        ],
    }


def test_a_server_writes_exactly_the_sampled_requests_and_flushes_on_sigterm(
    tmp_path: Path,
) -> None:
    require_wiring(tmp_path)
    with Registry(tmp_path / "reg") as reg:
        reg.push(simple_model(tmp_path / "simple.onnx"), name="simple")
    logs = tmp_path / "payloads"
    env = {
        "MODELYARD_PAYLOAD_LOG": str(logs),
        "MODELYARD_PAYLOAD_LOG_RATE": str(RATE),
        "MODELYARD_PAYLOAD_LOG_REDACT": "INPUT1",
        "MODELYARD_REPLICA_ID": "it",
    }
    server = start_server(tmp_path / "reg", env=env)
    ids = [f"it-{i:04d}" for i in range(300)]
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for i, request_id in enumerate(ids):
                r = client.post("/v2/models/simple/infer", json=infer_body(i, request_id))
                assert r.status_code == 200, r.text
    finally:
        assert server.terminate() == 0  # SIGTERM: drain, then the closers flush the log

    expected = sorted(rid for rid in ids if is_sampled(rid, RATE))
    assert 60 < len(expected) < 120
    records = list(read_jsonl(logs))
    assert sorted(r["request_id"] for r in records) == expected
    assert all(p.name.startswith("payloads-it-") for p in logs.glob("*.jsonl"))
    for r in records:
        i = ids.index(r["request_id"])
        assert set(r["inputs"]) == {"INPUT0"}  # INPUT1 redacted
        assert r["inputs"]["INPUT0"]["data"] == [i] * 16
        assert r["outputs"]["OUTPUT1"]["data"] == [i - 1] * 16
        assert (r["endpoint"], r["model"], r["version"], r["code"]) == (
            "simple",
            "simple",
            "1",
            "OK",
        )


# ---- Redis stream ------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed")
    import redis

    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    service_missing(f"redis-server did not start on port {port}")
                time.sleep(0.05)  # polling a starting process: there is no event to wait on
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def test_records_go_to_a_redis_stream(redis_url: str) -> None:
    import orjson
    import redis

    sink = RedisSink(redis_url + "?stream=test:payloads&maxlen=1000")
    logger = PayloadLogger(sink, PayloadRates(1.0), redact=("secret",))
    for i in range(50):
        logger.on_infer(event_for(f"r{i}"))
    logger.close()
    assert logger.written == 50 and logger.dropped == 0
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange("test:payloads")
    client.close()
    records = [orjson.loads(fields[b"record"]) for _, fields in entries]
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(50)]
    assert all("secret" not in r["inputs"] and "secret" not in r["outputs"] for r in records)
