"""A stream consumer's knobs and counters: :class:`StreamOptions` (how it paces itself), the
retry :class:`Backoff`, :class:`StreamStats` (counts since start) and :class:`StreamMetrics`
(the Prometheus series)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How the consumer paces itself."""

    max_in_flight: int = 512
    batch: int = 64
    #: Merge the messages of one fetch into one request when the model is row-wise.
    merge: bool = True
    poll_s: float = 0.5
    lag_interval_s: float = 10.0
    retry_initial_s: float = 0.05
    retry_max_s: float = 5.0
    #: How long a fetch may overstay ``poll_s`` before it is given up and retried (a broker
    #: client that never returns must not stall the consumer or keep it from stopping).
    fetch_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise InvalidInputError(f"--max-in-flight must be >= 1, got {self.max_in_flight}")
        if self.batch < 1:
            raise InvalidInputError(f"--batch must be >= 1, got {self.batch}")
        if self.poll_s <= 0 or self.lag_interval_s <= 0 or self.fetch_grace_s <= 0:
            raise InvalidInputError("poll_s, lag_interval_s and fetch_grace_s must be > 0")


@dataclass(slots=True)
class StreamStats:
    """Counts since the consumer started."""

    received: int = 0
    scored: int = 0
    dead_lettered: int = 0
    retried: int = 0
    acked: int = 0
    left_unacked: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Backoff:
    """Retry delays: ``initial``, doubling up to ``limit``; :meth:`reset` after a success."""

    def __init__(self, initial: float, limit: float) -> None:
        self._initial = self._delay = initial
        self._limit = limit

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self._limit)
        return delay

    def reset(self) -> None:
        self._delay = self._initial


class StreamMetrics:
    """Prometheus series of a stream consumer, in ``registry`` (a new one by default)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry if registry is not None else CollectorRegistry()
        self.lag = Gauge(
            "modelyard_stream_lag_messages",
            "Messages of the source the consumer group has not acknowledged yet.",
            ["source"],
            registry=self.registry,
        )
        self.messages = Counter(
            "modelyard_stream_messages_total",
            "Messages settled by the stream consumer, by outcome (scored, dead_letter).",
            ["outcome"],
            registry=self.registry,
        )
