"""The peer of the stream benchmark: a hand-written micro-batching consumer per broker.

One loop, no framework: fetch up to ``batch`` messages, ``orjson.loads`` each, stack the rows,
one ONNX Runtime call for all of them, write one result per message, acknowledge (commit) - the
same at-least-once order as ``modelyard stream`` - then fetch again. Nothing is validated,
nothing else is in flight, no dead letters: what a team would write by hand for one model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

Score = Callable[[list[bytes]], list[bytes]]


def scorer(model_path: str) -> Score:
    import onnxruntime as ort

    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])

    def score(bodies: list[bytes]) -> list[bytes]:
        docs = [orjson.loads(b) for b in bodies]
        x = np.array([d["inputs"]["input"] for d in docs], dtype=np.float32)
        (y,) = session.run(None, {"input": x})
        return [
            orjson.dumps(
                {"id": d["id"], "model": "linear", "version": 1, "outputs": {"output": [row]}},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            for d, row in zip(docs, y, strict=True)
        ]

    return score


async def redis_loop(
    address: str, names: dict[str, str], n: int, batch: int, score: Score
) -> float:
    import redis.asyncio as aioredis

    r: Any = aioredis.Redis.from_url(f"redis://{address}/0")
    await r.xgroup_create(names["source"], "plain", id="0", mkstream=True)
    done, started = 0, None
    while done < n:
        reply = await r.xreadgroup("plain", "p1", {names["source"]: ">"}, count=batch, block=100)
        entries = reply[0][1] if reply else []
        if not entries:
            continue
        started = started or time.perf_counter()
        out = score([fields[b"data"] for _, fields in entries])
        pipe = r.pipeline(transaction=False)
        for body in out:
            pipe.xadd(names["sink"], {"data": body})
        await pipe.execute()
        await r.xack(names["source"], "plain", *[e[0] for e in entries])
        done += len(entries)
    await r.aclose()
    return time.perf_counter() - (started or time.perf_counter())


async def nats_loop(address: str, names: dict[str, str], n: int, batch: int, score: Score) -> float:
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    nc = await nats.connect(f"nats://{address}")
    js = nc.jetstream()
    await js.add_stream(name=names["sink_stream"], subjects=[names["sink"]])
    psub = await js.pull_subscribe(names["source"], durable="plain", stream=names["source_stream"])
    done, started = 0, None
    while done < n:
        try:
            msgs = await psub.fetch(batch, timeout=0.1)
        except (NatsTimeout, TimeoutError):
            continue
        started = started or time.perf_counter()
        out = score([m.data for m in msgs])
        await asyncio.gather(*(js.publish(names["sink"], body) for body in out))
        await asyncio.gather(*(m.ack() for m in msgs))
        done += len(msgs)
    await nc.close()
    return time.perf_counter() - (started or time.perf_counter())


async def kafka_loop(
    address: str, names: dict[str, str], n: int, batch: int, score: Score
) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]

    consumer = AIOKafkaConsumer(
        names["source"],
        bootstrap_servers=address,
        group_id="plain",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
    )
    producer = AIOKafkaProducer(bootstrap_servers=address, acks="all")
    await consumer.start()
    await producer.start()
    done, started = 0, None
    while done < n:
        batches = await consumer.getmany(timeout_ms=100, max_records=batch)
        records = [r for rs in batches.values() for r in rs]
        if not records:
            continue
        started = started or time.perf_counter()
        out = score([r.value for r in records])
        sent = [await producer.send(names["sink"], body) for body in out]
        await asyncio.gather(*sent)
        await consumer.commit()
        done += len(records)
    await consumer.stop()
    await producer.stop()
    return time.perf_counter() - (started or time.perf_counter())


LOOPS = {"redis": redis_loop, "nats": nats_loop, "kafka": kafka_loop}
