"""Redis Streams: ``redis://[:password@]host:port/db?stream=S``.

Source: a member of consumer group ``--group`` (created at the start of the stream when
missing) reading with ``XREADGROUP``; ``XACK`` after the result is written. A restarted consumer
first re-reads what it had been given and never acknowledged (``XREADGROUP ... 0``), and every
member takes over entries that another member left pending for longer than ``claim_idle_ms``
(``XAUTOCLAIM``: a crashed consumer under another name). The body is the entry's ``field``
(default ``data``); an entry without it is dead-lettered with all its fields as the body.

Sink: ``XADD`` of ``{field: body}``, pipelined; ``maxlen=N`` trims approximately.
Query parameters: ``stream`` (required), ``field``, ``claim_idle_ms`` (default 60000),
``maxlen``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson

from modelyard.errors import install_hint
from modelyard.jobs.sources import BrokerUrl, Message

DEFAULT_FIELD = "data"
DEFAULT_CLAIM_IDLE_MS = 60_000


def _client(url: BrokerUrl) -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:
        raise install_hint("redis", "stream") from exc
    return aioredis.Redis.from_url(f"redis://{url.hosts[0]}{url.path}")


def _describe(url: BrokerUrl, key: str) -> str:
    host = url.hosts[0].rpartition("@")[2]  # no credentials in logs
    return f"redis://{host}{url.path}?stream={key}"


class RedisSource:
    """A consumer-group member on one Redis stream."""

    def __init__(
        self, client: Any, url: BrokerUrl, *, group: str, consumer: str, claim_idle_ms: int
    ) -> None:
        self.stream = url.required("stream")
        self.name = _describe(url, self.stream)
        self.group = group
        self.consumer = consumer
        self.field = (url.param("field") or DEFAULT_FIELD).encode()
        self.claim_idle_ms = claim_idle_ms
        self._redis = client
        self._backlog: bytes | None = b"0"  # own pending entries are read first
        self._held: set[bytes] = set()
        self._next_claim = 0.0

    @classmethod
    async def open(cls, url: BrokerUrl, *, group: str, consumer: str) -> RedisSource:
        from redis.exceptions import ResponseError

        idle = int(url.number("claim_idle_ms", DEFAULT_CLAIM_IDLE_MS))
        source = cls(_client(url), url, group=group, consumer=consumer, claim_idle_ms=idle)
        try:
            await source._redis.xgroup_create(source.stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                await source.close()
                raise
        except BaseException:
            await source.close()
            raise
        return source

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        if self._backlog is not None:
            entries = await self._read(self._backlog, max_messages, None)
            if entries:
                self._backlog = entries[-1][0]
                return await self._messages(entries)
            self._backlog = None
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_claim:
            self._next_claim = loop.time() + max(self.claim_idle_ms / 2000, 0.05)
            claimed = await self._claim(max_messages)
            if claimed:
                return claimed
        block = max(int(wait_s * 1000), 1)  # BLOCK 0 would wait forever
        return await self._messages(await self._read(b">", max_messages, block))

    async def _read(self, start: bytes, count: int, block: int | None) -> list[Any]:
        reply = await self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block
        )
        return list(reply[0][1]) if reply else []

    async def _claim(self, count: int) -> list[Message]:
        """Entries other members left pending too long (they crashed, or are stuck)."""
        reply = await self._redis.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=count
        )
        entries = [e for e in reply[1] if e[0] not in self._held]
        return await self._messages(entries)

    async def _messages(self, entries: list[Any]) -> list[Message]:
        out: list[Message] = []
        gone: list[bytes] = []
        for entry_id, fields in entries:
            if not fields:  # trimmed away while pending: nothing to score
                gone.append(entry_id)
                continue
            body = fields.get(self.field)
            if body is None:
                body = orjson.dumps({_text(k): _text(v) for k, v in fields.items()})
            self._held.add(entry_id)
            out.append(Message(bytes(body), f"{self.stream}/{_text(entry_id)}", entry_id))
        if gone:
            await self._redis.xack(self.stream, self.group, *gone)
        return out

    async def ack(self, messages: Sequence[Message]) -> None:
        ids = [m.token for m in messages]
        if ids:
            await self._redis.xack(self.stream, self.group, *ids)
        self._held.difference_update(ids)

    async def lag(self) -> int | None:
        for info in await self._redis.xinfo_groups(self.stream):
            if _text(info.get("name")) == self.group:
                undelivered = info.get("lag")
                if undelivered is None:  # Redis cannot tell after some deletions
                    return None
                return int(undelivered) + int(info.get("pending") or 0)
        return None

    async def close(self) -> None:
        await self._redis.aclose()


class RedisSink:
    """Appends bodies to one Redis stream."""

    def __init__(self, client: Any, url: BrokerUrl) -> None:
        self.stream = url.required("stream")
        self.name = _describe(url, self.stream)
        self.field = url.param("field") or DEFAULT_FIELD
        maxlen = url.param("maxlen")
        self.maxlen = int(url.number("maxlen", 0)) if maxlen else None
        self._redis = client

    @classmethod
    async def open(cls, url: BrokerUrl) -> RedisSink:
        return cls(_client(url), url)

    async def write(self, bodies: Sequence[bytes]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for body in bodies:
            pipe.xadd(self.stream, {self.field: body}, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
