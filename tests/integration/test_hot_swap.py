"""Hot swap across replicas: a registry on PostgreSQL + an S3-API server, two server processes
sharing it. Moving ``production`` from v1 to v2 under continuous load is seen by both within the
watch interval; no request fails; every response comes from exactly one version (its outputs
match the ``model_version`` it names), and each server switches once, v1 -> v2."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import onnx
import pytest
from onnx import TensorProto, helper

from modelyard.core.watch import RegistryWatcher
from modelyard.registry import Registry
from tests.integration.conftest import S3Server
from tests.serverproc import ServerProcess, start_server

pytestmark = pytest.mark.integration

WATCH_INTERVAL_S = 0.5
A = list(range(16))
B = [3] * 16
BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": A},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": B},
    ]
}
# What OUTPUT0 must be for each version: v1 adds, v2 subtracts.
EXPECTED = {
    "1": [a + b for a, b in zip(A, B, strict=True)],
    "2": [a - b for a, b in zip(A, B, strict=True)],
}


def two_input_model(path: Path, op: str) -> Path:
    """INPUT0, INPUT1 INT32 [-1, 16] -> OUTPUT0 = INPUT0 <op> INPUT1."""
    t = TensorProto.INT32
    graph = helper.make_graph(
        [helper.make_node(op, ["INPUT0", "INPUT1"], ["OUTPUT0"])],
        op.lower(),
        [
            helper.make_tensor_value_info("INPUT0", t, ["batch", 16]),
            helper.make_tensor_value_info("INPUT1", t, ["batch", 16]),
        ],
        [helper.make_tensor_value_info("OUTPUT0", t, ["batch", 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@dataclass(frozen=True)
class Result:
    server: int
    thread: int
    started: float
    ended: float
    version: str
    error: str = ""


class Load:
    """Threads posting to each server back to back (keep-alive), recording every answer."""

    def __init__(self, servers: list[ServerProcess], per_server: int = 2) -> None:
        self.results: list[Result] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i, j, s.base_url), daemon=True)
            for i, s in enumerate(servers)
            for j in range(per_server)
        ]

    def _run(self, server: int, thread: int, base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    r = client.post("/v2/models/swapped/infer", json=BODY)
                    doc = r.json()
                    version = str(doc.get("model_version", ""))
                    error = "" if r.status_code == 200 else f"{r.status_code} {r.text}"
                    if not error and doc["outputs"][0]["data"] != EXPECTED.get(version):
                        error = f"version {version} answered {doc['outputs'][0]['data']}"
                except httpx.HTTPError as exc:
                    version, error = "", repr(exc)
                result = Result(server, thread, started, time.monotonic(), version, error)
                with self._lock:
                    self.results.append(result)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def wait(self, predicate: object, timeout: float = 60.0) -> None:
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        done = threading.Event()
        while not predicate(self.snapshot()):
            assert time.monotonic() < deadline, "load condition not met in time"
            done.wait(0.01)


@pytest.fixture
def shared_registry(
    pg_schema_url: str, s3_server: S3Server, tmp_path: Path
) -> Iterator[tuple[Registry, dict[str, str]]]:
    artifacts = f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:12]}"
    reg = Registry(pg_schema_url, artifacts=artifacts, storage_options=s3_server.storage_options())
    env = {
        "MODELYARD_ARTIFACTS": artifacts,
        "MODELYARD_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MODELYARD_S3_KEY": s3_server.key,
        "MODELYARD_S3_SECRET": s3_server.secret,
        "AWS_DEFAULT_REGION": s3_server.region,
        "MODELYARD_WATCH_INTERVAL_S": str(WATCH_INTERVAL_S),
        "MODELYARD_LOG_LEVEL": "warning",
    }
    yield reg, env
    reg.close()


def test_alias_move_is_hot_swapped_on_every_replica_without_a_failure(
    shared_registry: tuple[Registry, dict[str, str]], pg_schema_url: str, tmp_path: Path
) -> None:
    reg, env = shared_registry
    reg.push(two_input_model(tmp_path / "add.onnx", "Add"), name="swapped", alias="production")
    v2 = reg.push(two_input_model(tmp_path / "sub.onnx", "Sub"), name="swapped")
    servers = [
        start_server(
            pg_schema_url,
            "--preload",
            "swapped",
            env={**env, "MODELYARD_LOCAL_CACHE_DIR": str(tmp_path / f"cache{i}")},
        )
        for i in range(2)
    ]
    try:
        with Load(servers) as load:
            load.wait(lambda rs: all(sum(r.server == i for r in rs) >= 50 for i in range(2)))
            moved_at = time.monotonic()
            reg.set_alias("swapped", "production", v2.version)
            load.wait(lambda rs: {r.server for r in rs if r.version == "2"} == {0, 1})
            seen_after = {
                i: min(r.ended for r in load.snapshot() if r.server == i and r.version == "2")
                - moved_at
                for i in range(2)
            }
            n = len(load.snapshot())
            load.wait(lambda rs: len(rs) >= n + 100)
        results = load.snapshot()
        caches = [httpx.get(f"{s.base_url}/v2/fleet/cache", timeout=10).json() for s in servers]
    finally:
        for s in servers:
            assert s.terminate() == 0, s.log()

    errors = [r for r in results if r.error]
    assert errors == [], errors[:5]
    assert {r.version for r in results} == {"1", "2"}
    for i in range(2):
        mine = [r for r in results if r.server == i]
        # seen within the interval (plus loading and warming v2 before switching to it)
        assert seen_after[i] < WATCH_INTERVAL_S + 2.0, seen_after
        # one switch per server: nothing that started after a v2 answer got v1
        first_v2_end = min(r.ended for r in mine if r.version == "2")
        assert max(r.started for r in mine if r.version == "1") < first_v2_end
        for j in {r.thread for r in mine}:
            versions = [r.version for r in sorted(mine, key=lambda r: r.started) if r.thread == j]
            assert versions == sorted(versions), f"server {i} thread {j} went back to v1"
        # v1 drained and unloaded; v2 loaded and warmed before the switch
        assert [(e["model"], e["version"]) for e in caches[i]["entries"]] == [("swapped", 2)]
        assert [(s["old"], s["new"]) for s in caches[i]["watch"]["swaps"]] == [([1], 2)]


def test_postgres_notify_wakes_the_watcher_long_before_its_interval(
    shared_registry: tuple[Registry, dict[str, str]], pg_schema_url: str, tmp_path: Path
) -> None:
    reg, _ = shared_registry
    listening = Registry(pg_schema_url, artifacts="s3://unused/x")
    watcher = RegistryWatcher(listening, interval_s=3600.0)  # polling alone would take an hour
    seen: asyncio.Queue[int] = asyncio.Queue()

    async def listener(seq: int) -> None:
        seen.put_nowait(seq)

    watcher.subscribe(listener)

    async def main() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            first = await asyncio.wait_for(seen.get(), 30)
            # A push made before the LISTEN connection is up may be missed by NOTIFY (the
            # poll on connecting catches it then): push until one is seen.
            for _ in range(3):
                model = two_input_model(tmp_path / "m.onnx", "Add")
                await asyncio.to_thread(reg.push, model, name="n")
                with contextlib.suppress(TimeoutError):
                    assert await asyncio.wait_for(seen.get(), 10) > first
                    return
            raise AssertionError("no notification reached the watcher")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(main())
    finally:
        listening.close()
