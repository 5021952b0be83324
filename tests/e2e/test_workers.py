"""`serve --workers 2`: a worker killed under load is restarted; the other keeps serving. Either
worker's dashboard counts the traffic of both."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.registry.registry import Registry
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import simple_model

BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]
}
_READY = re.compile(r"modelyard ready pid=(\d+) rss_mib=([\d.]+)")
SERIES = "/ui/api/timeseries?minutes=5&step=1&limit=5"


def ready(server: ServerProcess) -> list[tuple[int, float]]:
    """(pid, rss MiB) of every "modelyard ready" line so far."""
    return [
        (int(m.group(1)), float(m.group(2)))
        for line in list(server.lines)
        if (m := _READY.search(line))
    ]


def pids(server: ServerProcess) -> set[int]:
    return {pid for pid, _ in ready(server)}


@pytest.fixture
def temp_dir() -> Iterator[Path]:
    """The server's TMPDIR: short (Unix socket paths), and checked for leftovers at exit."""
    path = Path(tempfile.mkdtemp(prefix="my-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(tmp_path: Path, temp_dir: Path) -> Iterator[ServerProcess]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "simple.onnx"), name="simple", alias="production")
    reg.close()
    env = {"TMPDIR": str(temp_dir)}
    proc = start_server(tmp_path / "reg", "--workers", "2", "--preload", "simple", env=env)
    yield proc
    assert proc.terminate() == 0, proc.log()
    assert list(temp_dir.glob("modelyard-*")) == []  # the supervisor removed its directories


def timeseries(server: ServerProcess) -> dict[str, Any]:
    """One poll of the dashboard, on a fresh connection: it may reach either worker."""
    response = httpx.get(server.base_url + SERIES, timeout=10)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_killed_worker_is_replaced_and_the_other_keeps_serving(server: ServerProcess) -> None:
    server.wait_for(lambda: len(pids(server)) >= 2)
    first = pids(server)
    assert all(rss > 0 for _, rss in ready(server))  # memory per worker is reported

    stop = threading.Event()
    killed = threading.Event()
    results: list[tuple[bool, bool]] = []  # (completed after the kill, succeeded)
    failures: list[str] = []

    def load() -> None:
        # a fresh connection per request, so requests spread over both workers
        while not stop.is_set():
            try:
                r = httpx.post(f"{server.base_url}/v2/models/simple/infer", json=BODY, timeout=10)
                ok = r.status_code == 200
                if not ok:
                    failures.append(f"{r.status_code} {r.text}")
            except httpx.HTTPError as exc:
                ok = False
                failures.append(repr(exc))
            # a request counts as "after" when the kill came before it completed: those in
            # flight on the killed worker may fail
            results.append((killed.is_set(), ok))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        server.wait_for(lambda: len(results) >= 50)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        killed.set()
        server.wait_for(lambda: len(pids(server) - first) >= 1)  # a new worker is ready
        n = len(results)
        server.wait_for(lambda: len(results) >= n + 100)
    finally:
        stop.set()
        for t in threads:
            t.join()
    before = [ok for after, ok in results if not after]
    after = [ok for after, ok in results if after]
    assert all(before), failures
    # only requests in flight on the killed worker may fail; the rest succeed
    assert sum(after) >= len(after) - 8, results
    assert after[-50:] == [True] * 50
    # the killed worker's socket was removed when it was replaced: two workers, both answer
    assert [timeseries(server)["workers"] for _ in range(6)] == [{"answered": 2, "asked": 2}] * 6


def test_either_worker_counts_the_requests_of_both(server: ServerProcess, temp_dir: Path) -> None:
    server.wait_for(lambda: len(pids(server)) >= 2)
    (peers_dir,) = temp_dir.glob("modelyard-ui-*")
    assert peers_dir.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in peers_dir.iterdir()) == sorted(f"{p}.sock" for p in pids(server))
    sent = 40
    served_by = set()
    for _ in range(sent):  # a fresh connection each: the kernel spreads them over the workers
        response = httpx.post(f"{server.base_url}/v2/models/simple/infer", json=BODY, timeout=10)
        assert response.status_code == 200, response.text
        served_by.add(response.headers["x-request-id"][:16])  # a per-process prefix
    assert len(served_by) == 2  # each worker alone saw only part of the traffic
    # a second is counted once it is over: wait for the last one to end
    server.wait_for(lambda: timeseries(server)["total"]["requests"] == sent)

    answers: list[dict[str, Any]] = []
    while len(answers) < 6 or {doc["pid"] for doc in answers} != pids(server):
        assert len(answers) < 60, [doc["pid"] for doc in answers]
        answers.append(timeseries(server))
    for doc in answers:
        assert doc["workers"] == {"answered": 2, "asked": 2}
        assert doc["total"]["requests"] == sent and sum(doc["total"]["rps"]) == sent
        assert doc["total"]["errors"] == 0
        assert [(m["model"], m["requests"]) for m in doc["models"]] == [("simple", sent)]
    overview = httpx.get(f"{server.base_url}/ui/api/overview", timeout=10).json()
    assert overview["server"]["live_workers"] == {"answered": 2, "asked": 2}
