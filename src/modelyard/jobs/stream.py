"""Stream scoring: consume messages from a broker, score them, write the results to a sink.

The consumer is a frontend like REST or gRPC: it decodes a message into an
:class:`~modelyard.types.InferRequest`, calls the serving dataplane (the same registry, model
cache, signature checks and batcher a server uses, built by :func:`modelyard.app.build_app`),
and encodes the answer. Its own job is the delivery guarantee:

* **micro-batching**: each fetch takes up to ``batch`` messages; those of one form become one
  request when the model is row-wise, and the model's batcher merges concurrent fetches;
* **backpressure**: at most ``max_in_flight`` messages are fetched and not yet acknowledged;
* **at-least-once**: a message is acknowledged only after its result (or dead letter) was
  written; a crash before that means it is delivered again (a duplicate, never a loss);
* **poison messages** go to the dead-letter sink with the error and are acknowledged; errors
  that say "not now" (model loading or overloaded, sink down) are retried with backoff;
* **graceful shutdown**: after :meth:`StreamConsumer.stop` nothing is fetched, and everything
  in flight is settled before :meth:`StreamConsumer.run` returns;
* **consumer lag**: :meth:`StreamConsumer.lag`, a log line every ``lag_interval_s`` and the
  ``modelyard_stream_lag_messages`` gauge.

The message format is in :mod:`modelyard.jobs.stream_codec`; the command in
:mod:`modelyard.jobs.stream_run`; the user guide in ``docs/stream.md``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.errors import InvalidInputError
from modelyard.jobs.sources import Message, Sink, Source
from modelyard.jobs.stream_codec import (
    can_merge,
    code_of,
    dead_letter_body,
    encode_result,
    is_transient,
    merge_key,
    merge_requests,
    parse_message,
    request_of,
    split_response,
)
from modelyard.types import InferRequest, InferResponse, RequestContext, Signature

if TYPE_CHECKING:
    from modelyard.core.serving import ServingDataPlane

log = logging.getLogger("modelyard.stream")

__all__ = [
    "ServingModel",
    "StreamConsumer",
    "StreamModel",
    "StreamOptions",
    "StreamStats",
]


class StreamModel(Protocol):
    """The model a stream is scored with: its current signature and the dataplane call."""

    async def signature(self) -> Signature: ...

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse: ...


class ServingModel:
    """``name`` / ``name@alias`` / ``name:version`` served by a :class:`ServingDataPlane`.
    An alias is re-resolved like a server does it, so moving it moves the stream."""

    def __init__(self, serving: ServingDataPlane, name: str, ref: str | None) -> None:
        self.serving = serving
        self.name = name
        self.ref = ref

    async def signature(self) -> Signature:
        return (await self.serving.resolver.resolve(self.name, self.ref)).manifest.signature

    async def infer(self, request: InferRequest, ctx: RequestContext) -> InferResponse:
        return await self.serving.infer(self.name, self.ref, request, ctx)


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

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise InvalidInputError(f"--max-in-flight must be >= 1, got {self.max_in_flight}")
        if self.batch < 1:
            raise InvalidInputError(f"--batch must be >= 1, got {self.batch}")
        if self.poll_s <= 0 or self.lag_interval_s <= 0:
            raise InvalidInputError("poll_s and lag_interval_s must be > 0")


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


# ---- the consumer -----------------------------------------------------------------------------
class StreamConsumer:
    """Scores ``source`` into ``sink`` with ``model``; poison messages go to ``dead_letter``."""

    def __init__(
        self,
        model: StreamModel,
        source: Source,
        sink: Sink,
        dead_letter: Sink,
        *,
        options: StreamOptions | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.model = model
        self.source = source
        self.sink = sink
        self.dead_letter = dead_letter
        self.options = options or StreamOptions()
        self.stats = StreamStats()
        self._clock = clock
        self._metrics = metrics
        self._in_flight = 0
        self._stop = asyncio.Event()
        self._started = clock.monotonic()

    @property
    def in_flight(self) -> int:
        """Messages fetched and not yet acknowledged (or given up at shutdown)."""
        return self._in_flight

    def stop(self) -> None:
        """Ask :meth:`run` to finish what is in flight and return (e.g. on SIGTERM)."""
        self._stop.set()

    async def lag(self) -> int | None:
        """The source's consumer lag: messages the group has not acknowledged yet."""
        value = await self.source.lag()
        if self._metrics is not None and value is not None:
            self._metrics.lag.labels(self.source.name).set(value)
        return value

    async def run(self) -> StreamStats:
        """Consume until :meth:`stop`; returns once everything in flight is settled."""
        self._started = self._clock.monotonic()
        await self.model.signature()  # an unknown model fails here, before anything is fetched
        reporter = asyncio.create_task(self._report_lag())
        tasks: set[asyncio.Task[None]] = set()
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await self._consume(tasks, stopping)
        except asyncio.CancelledError:
            for task in tasks:  # a hard stop: nothing in flight is written or acknowledged
                task.cancel()
            raise
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            stopping.cancel()
            reporter.cancel()
            await asyncio.gather(reporter, stopping, return_exceptions=True)
        await self._log_lag()
        return self.stats

    async def _consume(self, tasks: set[asyncio.Task[None]], stopping: asyncio.Task[Any]) -> None:
        opts = self.options
        backoff = _Backoff(opts.retry_initial_s, opts.retry_max_s)
        while not self._stop.is_set():
            room = opts.max_in_flight - self._in_flight
            if room <= 0:  # backpressure: wait for a batch to settle (or for stop)
                await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await self.source.fetch(min(opts.batch, room), opts.poll_s)
            except Exception as exc:  # a broker hiccup: the client reconnects, we back off
                log.warning("stream: fetch from %s failed: %s", self.source.name, exc)
                await self._pause(backoff.next())
                continue
            backoff.reset()
            if not messages:
                continue
            self._in_flight += len(messages)
            self.stats.received += len(messages)
            task = asyncio.create_task(self._settle(messages))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def _settle(self, messages: list[Message]) -> None:
        """Score, write and acknowledge one fetched batch."""
        try:
            results, dead, unsettled = await self._score(messages)
            done: list[Message] = []
            if results and await self._write(self.sink, [b for _, b in results]):
                done.extend(m for m, _ in results)
                self._count("scored", len(results))
            if dead and await self._write(self.dead_letter, [b for _, b in dead]):
                done.extend(m for m, _ in dead)
                self._count("dead_letter", len(dead))
            if done:
                await self._ack(done)
            self.stats.left_unacked += len(messages) - len(done)
            if unsettled:
                log.warning("stream: %d message(s) left for redelivery at shutdown", unsettled)
        except Exception:
            log.exception("stream: a batch of %d message(s) failed", len(messages))
            self.stats.left_unacked += len(messages)
        finally:
            self._in_flight -= len(messages)

    async def _score(
        self, messages: list[Message]
    ) -> tuple[list[tuple[Message, bytes]], list[tuple[Message, bytes]], int]:
        """(results, dead letters, how many were given up at shutdown)."""
        results: list[tuple[Message, bytes]] = []
        dead: list[tuple[Message, bytes]] = []
        todo = list(messages)
        backoff = _Backoff(self.options.retry_initial_s, self.options.retry_max_s)
        while todo:
            try:
                outcomes = await self._outcomes(todo, await self.model.signature())
            except Exception as exc:  # the registry could not say what the model takes
                outcomes = [(m.ref, exc) for m in todo]
            retry: list[Message] = []
            for message, (msg_id, outcome) in zip(todo, outcomes, strict=True):
                if isinstance(outcome, InferResponse):
                    results.append((message, encode_result(msg_id, outcome)))
                elif is_transient(outcome):
                    retry.append(message)
                else:
                    code = code_of(outcome)
                    self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
                    log.info("stream: message %s dead-lettered: %s", message.ref, outcome)
                    dead.append((message, dead_letter_body(message, msg_id, outcome)))
            if retry:
                self.stats.retried += len(retry)
                if self._stop.is_set():
                    return results, dead, len(retry)
                await self._pause(backoff.next())
            todo = retry
        return results, dead, 0

    async def _outcomes(
        self, messages: list[Message], signature: Signature
    ) -> list[tuple[Any, InferResponse | BaseException]]:
        """Each message's (id, response or error). Requests of one form (same inputs, shapes
        past the batch axis and outputs) are merged into one dataplane call when the model is
        row-wise (:func:`can_merge`); a merged call that fails is retried message by message,
        so one poison message costs the others nothing but a second call."""
        ids: list[Any] = []
        outcomes: list[InferResponse | BaseException | None] = []
        requests: dict[int, InferRequest] = {}
        groups: dict[Any, list[int]] = {}
        merge = self.options.merge and can_merge(signature)
        for i, message in enumerate(messages):
            msg_id, item = self._decode(message, signature)
            ids.append(msg_id)
            if isinstance(item, InferRequest):
                outcomes.append(None)
                requests[i] = item
                groups.setdefault(merge_key(item) if merge else i, []).append(i)
            else:
                outcomes.append(item)
        answers = await asyncio.gather(
            *(self._infer_group([requests[i] for i in idx]) for idx in groups.values())
        )
        for idx, answer in zip(groups.values(), answers, strict=True):
            for i, outcome in zip(idx, answer, strict=True):
                outcomes[i] = outcome
        return [(msg_id, o) for msg_id, o in zip(ids, outcomes, strict=True) if o is not None]

    @staticmethod
    def _decode(message: Message, signature: Signature) -> tuple[Any, InferRequest | BaseException]:
        msg_id: Any = message.ref
        try:
            msg_id, doc = parse_message(message)
            return msg_id, request_of(msg_id, doc, signature)
        except Exception as exc:
            return msg_id, exc

    async def _infer_group(
        self, requests: list[InferRequest]
    ) -> list[InferResponse | BaseException]:
        if len(requests) > 1:
            try:
                merged = await self.model.infer(merge_requests(requests), RequestContext())
                return list(split_response(merged, requests))
            except Exception as exc:
                if is_transient(exc):
                    return [exc] * len(requests)
        return list(await asyncio.gather(*(self._infer_one(r) for r in requests)))

    async def _infer_one(self, request: InferRequest) -> InferResponse | BaseException:
        try:
            return await self.model.infer(request, RequestContext())
        except Exception as exc:
            return exc

    async def _write(self, sink: Sink, bodies: list[bytes]) -> bool:
        """Write until it works (True) or the consumer stops (False: not acknowledged)."""
        backoff = _Backoff(self.options.retry_initial_s, self.options.retry_max_s)
        while True:
            try:
                await sink.write(bodies)
                return True
            except Exception as exc:
                if self._stop.is_set():
                    log.warning("stream: giving up writing to %s at shutdown: %s", sink.name, exc)
                    return False
                log.warning("stream: writing to %s failed, retrying: %s", sink.name, exc)
                await self._pause(backoff.next())

    async def _ack(self, messages: list[Message]) -> None:
        try:
            await self.source.ack(messages)
        except Exception as exc:  # written but not acknowledged: delivered again (a duplicate)
            log.warning("stream: acknowledging %d message(s) failed: %s", len(messages), exc)
            return
        self.stats.acked += len(messages)

    def _count(self, outcome: str, n: int) -> None:
        if outcome == "scored":
            self.stats.scored += n
        else:
            self.stats.dead_lettered += n
        if self._metrics is not None:
            self._metrics.messages.labels(outcome).inc(n)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` or until stop, whichever comes first."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _report_lag(self) -> None:
        while True:
            await asyncio.sleep(self.options.lag_interval_s)
            await self._log_lag()

    async def _log_lag(self) -> None:
        try:
            lag = await self.lag()
        except Exception as exc:
            log.warning("stream: could not read the lag of %s: %s", self.source.name, exc)
            return
        s = self.stats
        elapsed = max(self._clock.monotonic() - self._started, 1e-9)
        log.info(
            "stream %s: lag %s, scored %d, dead-lettered %d, in flight %d, %.0f msg/s",
            self.source.name,
            "unknown" if lag is None else lag,
            s.scored,
            s.dead_lettered,
            self._in_flight,
            (s.scored + s.dead_lettered) / elapsed,
        )


class _Backoff:
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
