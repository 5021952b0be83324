"""`serve --workers 2`: a worker killed under load is restarted; the other keeps serving."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

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
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    reg = Registry(tmp_path / "reg")
    reg.push(simple_model(tmp_path / "simple.onnx"), name="simple", alias="production")
    reg.close()
    proc = start_server(tmp_path / "reg", "--workers", "2", "--preload", "simple")
    yield proc
    assert proc.terminate() == 0, proc.log()


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
