"""Message brokers for stream scoring: where messages come from and where results go.

A :class:`Source` hands out messages and takes acknowledgements; a :class:`Sink` appends
message bodies durably. The stream consumer (:mod:`modelyard.jobs.stream`) needs nothing else,
so a broker is one small module:

* ``redis://host:port/db?stream=S`` - Redis Streams, consumer groups (:mod:`.redis`);
* ``nats://host:port?subject=S&stream=X`` - NATS JetStream, durable pull consumers (:mod:`.nats`);
* ``kafka://host:port?topic=T`` - the Kafka protocol, consumer groups (:mod:`.kafka`);

and :mod:`.memory`, a process-local stream for tests and for embedding (no URL).

The contract every source keeps (the consumer's at-least-once guarantee rests on it): a message
that was fetched but never acknowledged - because the consumer crashed, was killed, or gave up on
it at shutdown - is delivered again, to this consumer after a restart or to another member of
the group. Acknowledging may happen in any order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from modelyard.errors import InvalidInputError

__all__ = [
    "BrokerUrl",
    "Message",
    "Sink",
    "Source",
    "dead_letter_url",
    "open_sink",
    "open_source",
    "parse_broker_url",
]

SCHEMES = ("redis", "nats", "kafka")
DEAD_LETTER_SUFFIX = ".dead-letter"


@dataclass(slots=True)
class Message:
    """One fetched message: its ``body``, a readable broker position (``ref``, for logs and
    dead letters) and whatever the source needs to acknowledge it (``token``)."""

    body: bytes
    ref: str
    token: Any = None


class Source(Protocol):
    """Where messages come from: a member of a consumer group on one stream, subject or topic."""

    #: Where this source reads, safe to print (no credentials).
    name: str

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most about ``wait_s`` seconds when none
        is ready (an empty list then). Messages not yet acknowledged by an earlier consumer of
        the group that is gone come first."""
        ...

    async def ack(self, messages: Sequence[Message]) -> None:
        """Mark ``messages`` as done: they are never delivered to the group again."""
        ...

    async def lag(self) -> int | None:
        """Messages of the stream the group has not acknowledged yet (delivered or not); None
        when the broker cannot tell."""
        ...

    async def close(self) -> None: ...


class Sink(Protocol):
    """Where bodies go: a stream, subject or topic."""

    name: str

    async def write(self, bodies: Sequence[bytes]) -> None:
        """Append ``bodies`` in order; returns once the broker has accepted every one (so the
        caller may then acknowledge the messages they came from). Raises on failure."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """A parsed ``--source`` / ``--sink`` URL."""

    scheme: str
    hosts: tuple[str, ...]
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    def param(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    def required(self, name: str) -> str:
        value = self.params.get(name)
        if not value:
            raise InvalidInputError(f"{self.text}: the URL needs ?{name}=...")
        return value

    def number(self, name: str, default: float) -> float:
        text = self.params.get(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if value < 0:
            raise InvalidInputError(f"{self.text}: {name}={text!r} is not a number >= 0")
        return value

    def with_param(self, name: str, value: str) -> str:
        """This URL's text with ``name`` set to ``value``."""
        params = {**self.params, name: value}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.scheme}://{','.join(self.hosts)}{self.path}?{query}"


def parse_broker_url(text: str, what: str = "broker URL") -> BrokerUrl:
    """Split ``scheme://host:port[,host:port]/path?k=v`` and check the scheme."""
    try:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        netloc = parts.netloc
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
    except ValueError as exc:
        raise InvalidInputError(f"{what} {text!r}: {exc}") from exc
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise InvalidInputError(f"{what} {text!r}: unknown scheme; use one of {known}")
    hosts = tuple(h for h in netloc.split(",") if h)
    if not hosts:
        raise InvalidInputError(f"{what} {text!r}: no host")
    return BrokerUrl(scheme, hosts, parts.path, params, text)


def dead_letter_url(source: str) -> str:
    """The default dead-letter destination of ``source``: the same broker, its stream, subject
    or topic name with ``.dead-letter`` appended (a NATS stream name with ``-dead-letter``)."""
    url = parse_broker_url(source, "--source")
    key = {"redis": "stream", "nats": "subject", "kafka": "topic"}[url.scheme]
    target = url.with_param(key, url.required(key) + DEAD_LETTER_SUFFIX)
    if url.scheme == "nats":
        stream = url.required("stream")
        target = parse_broker_url(target).with_param("stream", f"{stream}-dead-letter")
    return target


async def open_source(text: str, *, group: str, consumer: str) -> Source:
    """Connect to the source at URL ``text`` as member ``consumer`` of consumer ``group``
    (created when missing, reading from the start of the stream)."""
    url = parse_broker_url(text, "--source")
    if url.scheme == "redis":
        from modelyard.jobs.sources.redis import RedisSource

        return await RedisSource.open(url, group=group, consumer=consumer)
    if url.scheme == "nats":
        from modelyard.jobs.sources.nats import NatsSource

        return await NatsSource.open(url, group=group)
    if url.scheme == "kafka":
        from modelyard.jobs.sources.kafka import KafkaSource

        return await KafkaSource.open(url, group=group, consumer=consumer)
    raise AssertionError(f"unhandled scheme {url.scheme}")  # parse_broker_url checked it


async def open_sink(text: str, what: str = "--sink") -> Sink:
    """Connect to the sink at URL ``text``."""
    url = parse_broker_url(text, what)
    if url.scheme == "redis":
        from modelyard.jobs.sources.redis import RedisSink

        return await RedisSink.open(url)
    if url.scheme == "nats":
        from modelyard.jobs.sources.nats import NatsSink

        return await NatsSink.open(url)
    if url.scheme == "kafka":
        from modelyard.jobs.sources.kafka import KafkaSink

        return await KafkaSink.open(url)
    raise AssertionError(f"unhandled scheme {url.scheme}")  # parse_broker_url checked it


def split_hosts(url: BrokerUrl, default_port: int) -> list[tuple[str, int]]:
    """``host[:port]`` entries of ``url`` as (host, port)."""
    out: list[tuple[str, int]] = []
    for entry in url.hosts:
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        try:
            out.append((host or entry, int(port) if port else default_port))
        except ValueError as exc:
            raise InvalidInputError(f"{url.text}: bad port in {entry!r}") from exc
    return out
