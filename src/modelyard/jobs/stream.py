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
* **poison messages** (invalid input, the model failing on it) go to the dead-letter sink with
  the error and are acknowledged; everything else says "not now" (a model loading, overloaded
  or broken, an alias gone, the sink down) and is retried with backoff until it passes;
* **graceful shutdown**: after :meth:`StreamConsumer.stop` nothing is fetched, and everything
  in flight is settled before :meth:`StreamConsumer.run` returns;
* **consumer lag**: :meth:`StreamConsumer.lag`, a log line every ``lag_interval_s`` and the
  ``modelyard_stream_lag_messages`` gauge.

The message format is in :mod:`modelyard.jobs.stream_codec`; the model adapters and how a fetched
batch is scored (merging requests) in :mod:`modelyard.jobs.stream_model`; options, retry backoff,
stats and metrics in :mod:`modelyard.jobs.stream_options` (their public names are re-exported
here); the command in :mod:`modelyard.jobs.stream_run`; the user guide in ``docs/stream.md``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.jobs.sources import Message, Sink, Source
from modelyard.jobs.stream_codec import code_of, dead_letter_body, encode_result, is_transient
from modelyard.jobs.stream_model import ServingModel, StreamModel, score_messages
from modelyard.jobs.stream_options import Backoff, StreamMetrics, StreamOptions, StreamStats
from modelyard.types import InferResponse

log = logging.getLogger("modelyard.stream")

__all__ = [
    "ServingModel",
    "StreamConsumer",
    "StreamMetrics",
    "StreamModel",
    "StreamOptions",
    "StreamStats",
]


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
        backoff = Backoff(opts.retry_initial_s, opts.retry_max_s)
        while not self._stop.is_set():
            room = opts.max_in_flight - self._in_flight
            if room <= 0:  # backpressure: wait for a batch to settle (or for stop)
                await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await self._fetch(min(opts.batch, room), stopping)
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

    async def _fetch(self, room: int, stopping: asyncio.Task[Any]) -> list[Message]:
        """One fetch, given up when the consumer stops or the fetch overstays ``poll_s`` by
        ``fetch_grace_s`` (a broker client that never returns must not keep the consumer from
        stopping, or stall it). A fetch given up returns nothing; what the broker had handed it
        is not acknowledged, so it is delivered again."""
        limit = self.options.poll_s + self.options.fetch_grace_s
        fetch = asyncio.ensure_future(self.source.fetch(room, self.options.poll_s))
        try:
            done, _ = await asyncio.wait(
                {fetch, stopping}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # a hard stop
            fetch.cancel()
            raise
        if fetch in done:
            return fetch.result()
        fetch.cancel()
        await asyncio.wait({fetch}, timeout=1.0)  # not forever: it may ignore the cancel too
        if fetch.done() and not fetch.cancelled():
            fetch.exception()  # retrieved: nothing to report for a fetch given up
        if stopping not in done:
            raise TimeoutError(f"no answer within {limit:g} s")
        return []

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
        backoff = Backoff(self.options.retry_initial_s, self.options.retry_max_s)
        while todo:
            try:
                signature = await self.model.signature()
                outcomes = await score_messages(
                    self.model, todo, signature, merge=self.options.merge
                )
            except Exception as exc:  # the registry could not say what the model takes
                outcomes = [(m.ref, exc) for m in todo]
            retry: list[Message] = []
            why: BaseException | None = None
            for message, (msg_id, outcome) in zip(todo, outcomes, strict=True):
                if isinstance(outcome, InferResponse):
                    results.append((message, encode_result(msg_id, outcome)))
                elif is_transient(outcome):
                    retry.append(message)
                    why = outcome
                else:
                    code = code_of(outcome)
                    self.stats.errors[code] = self.stats.errors.get(code, 0) + 1
                    log.info("stream: message %s dead-lettered: %s", message.ref, outcome)
                    dead.append((message, dead_letter_body(message, msg_id, outcome)))
            if retry:
                self.stats.retried += len(retry)
                if self._stop.is_set():
                    return results, dead, len(retry)
                delay = backoff.next()
                log.warning(
                    "stream: %d message(s) not scored now (%s: %s); again in %.1f s",
                    len(retry),
                    code_of(why) if why is not None else "?",
                    why,
                    delay,
                )
                await self._pause(delay)
            todo = retry
        return results, dead, 0

    async def _write(self, sink: Sink, bodies: list[bytes]) -> bool:
        """Write until it works (True) or the consumer stops (False: not acknowledged)."""
        backoff = Backoff(self.options.retry_initial_s, self.options.retry_max_s)
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
