"""``modelyard stream`` against a real Redis: consumer groups, XACK after write, XAUTOCLAIM."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelyard.registry.registry import Registry
from tests.integration.brokers import (
    StreamProcess,
    body,
    consume,
    every_message_scored,
    killed_and_restarted,
    push_model,
    redis_address,
    result_ids,
    unique,
    wait_until,
)
from tests.integration.streammodels import CONFIG, PacedDouble

pytestmark = pytest.mark.integration
__all__ = ["redis_address"]


class RedisKit:
    def __init__(self, address: str) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(f"redis://{address}/0")
        base = unique("orders-")
        self.names = {"source": base, "sink": f"{base}-scored", "dead": f"{base}-dead"}
        self.source_url = f"redis://{address}/0?stream={base}"
        self.sink_url = f"redis://{address}/0?stream={base}-scored"
        self.dead_url = f"redis://{address}/0?stream={base}-dead"

    def produce(self, bodies: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for data in bodies:
            pipe.xadd(self.names["source"], {"data": data})
        pipe.execute()

    def read(self, which: str) -> list[bytes]:
        return [fields[b"data"] for _, fields in self.client.xrange(self.names[which])]


@pytest.fixture
def kit(redis_address: str) -> Iterator[RedisKit]:
    made = RedisKit(redis_address)
    yield made
    made.client.close()


def test_every_message_is_scored_and_poison_is_dead_lettered(kit: RedisKit, tmp_path: Path) -> None:
    every_message_scored(kit, tmp_path / "registry")
    group = kit.client.xinfo_groups(kit.names["source"])[0]
    assert group["pending"] == 0 and group["lag"] == 0


def test_a_killed_consumer_restarted_loses_nothing(kit: RedisKit, tmp_path: Path) -> None:
    killed_and_restarted(kit, tmp_path / "registry", tmp_path)


def test_another_member_claims_what_a_dead_consumer_held(kit: RedisKit, tmp_path: Path) -> None:
    """A consumer under another name takes over (XAUTOCLAIM) what a dead one held."""
    kit.produce([body(i) for i in range(20)])
    kit.client.xgroup_create(kit.names["source"], "g", id="0")
    held = kit.client.xreadgroup("g", "crashed", {kit.names["source"]: ">"}, count=5)
    assert len(held[0][1]) == 5  # delivered to a consumer that will never acknowledge them
    registry = push_model(tmp_path / "registry", 0.0)
    source_url = kit.source_url + "&claim_idle_ms=1"
    stats = asyncio.run(consume(kit, registry, 20, source_url=source_url))
    assert stats.acked == 20 and result_ids(kit) == set(range(20))
    assert kit.client.xpending(kit.names["source"], "g")["pending"] == 0


def test_an_alias_moved_to_a_broken_version_leaves_the_old_one_scoring(
    kit: RedisKit, tmp_path: Path
) -> None:
    """As a server does: the stream's hot swapper loads the new version first; when it fails
    (a file fails verification) the old version keeps scoring and nothing is dead-lettered."""
    root = tmp_path / "registry"
    registry = push_model(root, 0.0)
    kit.produce([body(i) for i in range(20)])
    stream = StreamProcess(kit, registry, tmp_path / "stream.log", None)
    try:
        wait_until(lambda: len(result_ids(kit)) == 20, 60, "the first results")
        before = set((root / "artifacts").rglob(CONFIG))
        with Registry(root) as reg:
            reg.push(PacedDouble(0.0), name="paced")
            (broken,) = set((root / "artifacts").rglob(CONFIG)) - before
            broken.write_text('{"pace_s": 9}')  # not what was pushed: fails its checksum
            reg.set_alias("paced", "production", 2)
        wait_until(lambda: "hot swap of paced to version 2 failed" in stream.log(), 60, "the swap")
        kit.produce([body(i) for i in range(20, 40)])
        wait_until(lambda: len(result_ids(kit)) == 40, 60, "the later results")
    finally:
        assert stream.terminate() == 0, stream.log()
    versions = {orjson.loads(b)["version"] for b in kit.read("sink")}
    assert versions == {1} and kit.read("dead") == []
