"""NATS JetStream: ``nats://host:port[,host:port]?subject=S&stream=X``.

Source: a durable pull consumer named ``--group`` on stream ``X`` filtered to subject ``S``
(created when missing, delivering from the start, explicit acks). Every member of the group
fetches from the same durable consumer, so they share the work. A message not acknowledged
within ``ack_wait`` seconds (default 30) is delivered again - that is how the messages of a
killed consumer come back - so ``ack_wait`` must exceed the time a message may spend in flight.

Sink: a JetStream publish to ``S`` (the call returns once the stream stored the message).
Stream ``X`` is created with subject ``S`` when missing, and ``S`` is added to its subjects
when it does not cover it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from modelyard.errors import UnavailableError, install_hint
from modelyard.jobs.sources import BrokerUrl, Message

log = logging.getLogger("modelyard.stream")

DEFAULT_ACK_WAIT_S = 30.0
MAX_ACK_PENDING = 20_000


async def _connect(url: BrokerUrl) -> Any:
    try:
        import nats
    except ImportError as exc:
        raise install_hint("nats-py", "stream") from exc

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    servers = [f"nats://{host}" for host in url.hosts]
    try:
        return await nats.connect(
            servers=servers, error_cb=on_error, connect_timeout=5, max_reconnect_attempts=-1
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise UnavailableError(f"cannot connect to {', '.join(servers)}: {exc}") from exc


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


async def ensure_stream(js: Any, stream: str, subject: str) -> None:
    """Stream ``stream`` exists and captures ``subject``."""
    from nats.js.errors import NotFoundError

    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(name=stream, subjects=[subject])
        return
    subjects = list(info.config.subjects or [])
    if not any(subject_matches(p, subject) for p in subjects):
        info.config.subjects = [*subjects, subject]
        await js.update_stream(info.config)


class NatsSource:
    """A member of a durable JetStream pull consumer."""

    def __init__(self, nc: Any, psub: Any, stream: str, subject: str, group: str) -> None:
        self.name = f"nats:{stream}/{subject}"
        self.stream = stream
        self.group = group
        self._nc = nc
        self._psub = psub

    @classmethod
    async def open(cls, url: BrokerUrl, *, group: str) -> NatsSource:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        stream, subject = url.required("stream"), url.required("subject")
        ack_wait = url.number("ack_wait", DEFAULT_ACK_WAIT_S)
        nc = await _connect(url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, stream, subject)
            try:
                await js.consumer_info(stream, group)
            except NotFoundError:
                config = ConsumerConfig(
                    durable_name=group,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=ack_wait,
                    filter_subject=subject,
                    max_ack_pending=MAX_ACK_PENDING,
                )
                await js.add_consumer(stream, config)
            psub = await js.pull_subscribe_bind(durable=group, stream=stream)
        except BaseException:
            await nc.close()
            raise
        return cls(nc, psub, stream, subject, group)

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        from nats.errors import TimeoutError as NatsTimeout

        try:
            msgs = await self._psub.fetch(max_messages, timeout=max(wait_s, 0.05))
        except (NatsTimeout, TimeoutError):
            return []
        return [
            Message(bytes(m.data), f"{self.stream}/{m.metadata.sequence.stream}", m) for m in msgs
        ]

    async def ack(self, messages: Sequence[Message]) -> None:
        await asyncio.gather(*(m.token.ack() for m in messages))

    async def lag(self) -> int | None:
        info = await self._psub.consumer_info()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        try:
            await self._nc.flush()  # the last acks are on their way before the socket closes
        finally:
            await self._nc.close()


class NatsSink:
    """Publishes bodies to a subject of a JetStream stream."""

    def __init__(self, nc: Any, stream: str, subject: str) -> None:
        self.name = f"nats:{stream}/{subject}"
        self.stream = stream
        self.subject = subject
        self._nc = nc
        self._js = nc.jetstream()

    @classmethod
    async def open(cls, url: BrokerUrl) -> NatsSink:
        stream, subject = url.required("stream"), url.required("subject")
        nc = await _connect(url)
        try:
            await ensure_stream(nc.jetstream(), stream, subject)
        except BaseException:
            await nc.close()
            raise
        return cls(nc, stream, subject)

    async def write(self, bodies: Sequence[bytes]) -> None:
        js, subject, stream = self._js, self.subject, self.stream
        await asyncio.gather(*(js.publish(subject, body, stream=stream) for body in bodies))

    async def close(self) -> None:
        await self._nc.close()
