"""The Kafka protocol (aiokafka): ``kafka://host:port[,host:port]?topic=T``.

Source: a member of consumer group ``--group`` subscribed to ``T`` (from the earliest offset
when the group has none), auto-commit off. Kafka commits a position per partition, not single
messages, so a partition's offset is committed only up to the first message still in flight:
messages finish out of order, and a crash replays from that point (at-least-once; what was
already written after it comes again as duplicates). Partitions revoked by a rebalance drop
their uncommitted state; their new owner replays from the committed offset.

Sink: a producer with ``acks=all``; ``write`` returns once every record is acknowledged.
A missing topic is created (``partitions=N``, default 1) by both. :meth:`KafkaSource.lag` is
the lag of the partitions this member owns. ``session_timeout_ms`` and ``heartbeat_interval_ms``
tune the group membership (aiokafka's defaults: 10000 and 3000).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import UnavailableError, install_hint
from modelyard.jobs.sources import BrokerUrl, Message

log = logging.getLogger("modelyard.stream")


def _bootstrap(url: BrokerUrl) -> str:
    return ",".join(url.hosts)


def _aiokafka() -> Any:
    try:
        import aiokafka  # type: ignore[import-untyped]
    except ImportError as exc:
        raise install_hint("aiokafka", "stream") from exc
    return aiokafka


async def ensure_topic(url: BrokerUrl, topic: str) -> None:
    """Create ``topic`` when the cluster does not have it."""
    _aiokafka()
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError  # type: ignore[import-untyped]

    partitions = max(int(url.number("partitions", 1)), 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(url))
    try:
        await admin.start()
        if topic not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
            except TopicAlreadyExistsError:
                pass  # another member created it first
    except KafkaError as exc:
        raise UnavailableError(f"kafka {_bootstrap(url)}: {exc}") from exc
    finally:
        await admin.close()


def _group_timing(url: BrokerUrl) -> dict[str, int]:
    """``session_timeout_ms`` / ``heartbeat_interval_ms`` from the URL: how soon the group
    notices a dead member (and, on some brokers, how long a join waits for others)."""
    out: dict[str, int] = {}
    for name in ("session_timeout_ms", "heartbeat_interval_ms"):
        if url.param(name) is not None:
            out[name] = int(url.number(name, 0))
    return out


@dataclass
class _Partition:
    """Offsets of one partition fetched and not yet committed, in fetch order."""

    outstanding: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    committed: int | None = None

    def advance(self) -> int | None:
        """The new commit position when the finished prefix grew, else None."""
        moved = None
        while self.outstanding and self.outstanding[0] in self.done:
            offset = self.outstanding.popleft()
            self.done.discard(offset)
            moved = offset + 1
        if moved is None:
            return None
        self.committed = moved
        return moved


class KafkaSource:
    """A consumer-group member on one topic, committing after the results are written."""

    def __init__(self, consumer: Any, topic: str, url: BrokerUrl) -> None:
        self.name = f"kafka://{_bootstrap(url)}?topic={topic}"
        self.topic = topic
        self._consumer = consumer
        self._partitions: dict[Any, _Partition] = {}

    @classmethod
    async def open(cls, url: BrokerUrl, *, group: str, consumer: str) -> KafkaSource:
        aiokafka = _aiokafka()
        from aiokafka.errors import KafkaError

        topic = url.required("topic")
        await ensure_topic(url, topic)
        client = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=_bootstrap(url),
            group_id=group,
            client_id=consumer,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **_group_timing(url),
        )
        source = cls(client, topic, url)
        client.subscribe([topic], listener=_listener(aiokafka, source))
        try:
            await client.start()
        except KafkaError as exc:
            await client.stop()
            raise UnavailableError(f"kafka {_bootstrap(url)}: {exc}") from exc
        return source

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        batches = await self._consumer.getmany(
            timeout_ms=max(int(wait_s * 1000), 1), max_records=max_messages
        )
        out: list[Message] = []
        for tp, records in batches.items():
            state = self._partitions.setdefault(tp, _Partition())
            for record in records:
                state.outstanding.append(record.offset)
                ref = f"{tp.topic}/{tp.partition}/{record.offset}"
                out.append(Message(bytes(record.value or b""), ref, (tp, record.offset)))
        return out

    async def ack(self, messages: Sequence[Message]) -> None:
        touched: set[Any] = set()
        for message in messages:
            tp, offset = message.token
            state = self._partitions.get(tp)
            if state is not None:  # else revoked meanwhile: its new owner replays it
                state.done.add(offset)
                touched.add(tp)
        offsets = {}
        for tp in touched:
            position = self._partitions[tp].advance()
            if position is not None:
                offsets[tp] = position
        if offsets:
            await self._consumer.commit(offsets)

    def forget(self, partitions: Sequence[Any]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)

    async def lag(self) -> int | None:
        assigned = list(self._consumer.assignment())
        if not assigned:
            return 0
        ends = await self._consumer.end_offsets(assigned)
        starts = await self._consumer.beginning_offsets(assigned)
        total = 0
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            position = committed if committed is not None else starts[tp]
            total += max(int(ends[tp]) - int(position), 0)
        return total

    async def close(self) -> None:
        await self._consumer.stop()


def _listener(aiokafka: Any, source: KafkaSource) -> Any:
    """A rebalance listener that drops the commit state of partitions taken away."""

    class Listener(aiokafka.ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Sequence[Any]) -> None:
            source.forget(revoked)

        def on_partitions_assigned(self, assigned: Sequence[Any]) -> None:
            names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in assigned)
            log.info("kafka: assigned %s", names)

    return Listener()


class KafkaSink:
    """Produces bodies to one topic (``acks=all``)."""

    def __init__(self, producer: Any, topic: str, url: BrokerUrl) -> None:
        self.name = f"kafka://{_bootstrap(url)}?topic={topic}"
        self.topic = topic
        self._producer = producer

    @classmethod
    async def open(cls, url: BrokerUrl) -> KafkaSink:
        aiokafka = _aiokafka()
        from aiokafka.errors import KafkaError

        topic = url.required("topic")
        await ensure_topic(url, topic)
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=_bootstrap(url), acks="all")
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise UnavailableError(f"kafka {_bootstrap(url)}: {exc}") from exc
        return cls(producer, topic, url)

    async def write(self, bodies: Sequence[bytes]) -> None:
        sent = [await self._producer.send(self.topic, body) for body in bodies]
        await asyncio.gather(*sent)

    async def close(self) -> None:
        await self._producer.stop()
