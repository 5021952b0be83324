"""``modelyard stream`` against a real Kafka-protocol broker (Tansu): consumer groups, offsets
committed only after the results are written, replay after a kill."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.brokers import (
    every_message_scored,
    kafka_address,
    killed_and_restarted,
    unique,
)

pytestmark = pytest.mark.integration
__all__ = ["kafka_address"]


class KafkaKit:
    def __init__(self, address: str) -> None:
        self.address = address
        base = unique("orders-")
        self.topics = {"source": f"{base}-in", "sink": f"{base}-scored", "dead": f"{base}-dead"}
        # A short session: a killed member is noticed (and a join completes) within ~1 s.
        timing = "session_timeout_ms=2000&heartbeat_interval_ms=300"
        self.source_url = f"kafka://{address}?topic={self.topics['source']}&partitions=2&{timing}"
        self.sink_url = f"kafka://{address}?topic={self.topics['sink']}"
        self.dead_url = f"kafka://{address}?topic={self.topics['dead']}"

    def produce(self, bodies: list[bytes]) -> None:
        async def produce() -> None:
            from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
            from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

            admin = AIOKafkaAdminClient(bootstrap_servers=self.address)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(self.topics["source"], 2, 1)])
            finally:
                await admin.close()
            producer = AIOKafkaProducer(bootstrap_servers=self.address, acks="all")
            await producer.start()
            try:
                sent = [await producer.send(self.topics["source"], b) for b in bodies]
                await asyncio.gather(*sent)
            finally:
                await producer.stop()

        asyncio.run(produce())

    def read(self, which: str) -> list[bytes]:
        async def read() -> list[bytes]:
            from aiokafka import AIOKafkaConsumer, TopicPartition

            consumer: Any = AIOKafkaConsumer(bootstrap_servers=self.address, group_id=None)
            await consumer.start()
            try:
                topic = self.topics[which]
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    await consumer.topics()  # refresh metadata once
                    partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    return []
                tps = [TopicPartition(topic, p) for p in sorted(partitions)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                out: list[bytes] = []
                while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for records in batches.values():
                        out.extend(bytes(r.value) for r in records)
                return out
            finally:
                await consumer.stop()

        return asyncio.run(read())


@pytest.fixture
def kit(kafka_address: str) -> Iterator[KafkaKit]:
    yield KafkaKit(kafka_address)


def test_every_message_is_scored_and_poison_is_dead_lettered(kit: KafkaKit, tmp_path: Path) -> None:
    every_message_scored(kit, tmp_path / "registry")


def test_a_killed_consumer_restarted_loses_nothing(kit: KafkaKit, tmp_path: Path) -> None:
    killed_and_restarted(kit, tmp_path / "registry", tmp_path)
