"""``modelyard stream`` against a real NATS JetStream: durable pull consumers, ack after write,
redelivery after ``ack_wait`` of what a killed consumer held."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.brokers import (
    every_message_scored,
    killed_and_restarted,
    nats_address,
    unique,
)

pytestmark = pytest.mark.integration
__all__ = ["nats_address"]


class NatsKit:
    def __init__(self, address: str) -> None:
        self.address = address
        base = unique("orders-")
        self.subjects = {"source": f"{base}.in", "sink": f"{base}.scored", "dead": f"{base}.dead"}
        self.streams = {"source": f"{base}-in", "sink": f"{base}-scored", "dead": f"{base}-dead"}
        # A killed consumer's messages come back after ack_wait: keep it short for the test.
        self.source_url = self.url("source") + "&ack_wait=2"
        self.sink_url = self.url("sink")
        self.dead_url = self.url("dead")

    def url(self, which: str) -> str:
        return f"nats://{self.address}?subject={self.subjects[which]}&stream={self.streams[which]}"

    def produce(self, bodies: list[bytes]) -> None:
        async def produce() -> None:
            nc = await self._connect()
            try:
                js = nc.jetstream()
                await js.add_stream(name=self.streams["source"], subjects=[self.subjects["source"]])
                for start in range(0, len(bodies), 200):
                    chunk = bodies[start : start + 200]
                    await asyncio.gather(*(js.publish(self.subjects["source"], b) for b in chunk))
            finally:
                await nc.close()

        asyncio.run(produce())

    def read(self, which: str) -> list[bytes]:
        async def read() -> list[bytes]:
            from nats.js.errors import NotFoundError

            nc = await self._connect()
            try:
                js = nc.jetstream()
                try:
                    info = await js.stream_info(self.streams[which])
                except NotFoundError:
                    return []
                total = int(info.state.messages)
                out: list[bytes] = []
                if total == 0:
                    return out
                psub = await js.pull_subscribe(self.subjects[which], stream=self.streams[which])
                while len(out) < total:
                    try:
                        msgs = await psub.fetch(min(total - len(out), 1000), timeout=5)
                    except TimeoutError:  # nats' own is one; the caller polls again
                        break
                    out.extend(bytes(m.data) for m in msgs)
                await psub.unsubscribe()
                return out
            finally:
                await nc.close()

        return asyncio.run(read())

    async def _connect(self) -> Any:
        import nats

        return await nats.connect(f"nats://{self.address}", max_reconnect_attempts=0)


@pytest.fixture
def kit(nats_address: str) -> Iterator[NatsKit]:
    yield NatsKit(nats_address)


def test_every_message_is_scored_and_poison_is_dead_lettered(kit: NatsKit, tmp_path: Path) -> None:
    every_message_scored(kit, tmp_path / "registry")


def test_a_killed_consumer_restarted_loses_nothing(kit: NatsKit, tmp_path: Path) -> None:
    killed_and_restarted(kit, tmp_path / "registry", tmp_path)
