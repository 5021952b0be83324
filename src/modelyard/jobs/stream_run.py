"""``modelyard stream``: one consumer process, from flags to a running :class:`StreamConsumer`.

The model is served by the serving core of :func:`modelyard.app.build_app` (``features=False``:
registry, model cache, signature checks, batcher - what ``modelyard.load`` embeds), warmed
before the first message is fetched. SIGTERM and SIGINT stop the consumer gracefully: nothing
new is fetched, what is in flight is scored, written and acknowledged, then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from modelyard.errors import ModelYardError, UnavailableError
from modelyard.jobs.sources import Sink, Source, dead_letter_url, open_sink, open_source
from modelyard.jobs.stream import (
    ServingModel,
    StreamConsumer,
    StreamMetrics,
    StreamOptions,
    StreamStats,
)

if TYPE_CHECKING:
    from modelyard.app import App
    from modelyard.registry.registry import ModelVersion

_T = TypeVar("_T")
log = logging.getLogger("modelyard.stream")


@dataclass(frozen=True, slots=True)
class StreamJob:
    """What ``modelyard stream`` was asked to do."""

    model: str
    ref: str | None
    source: str
    sink: str
    dead_letter: str | None = None
    group: str | None = None
    consumer: str | None = None
    options: StreamOptions = field(default_factory=StreamOptions)
    metrics_port: int | None = None

    @property
    def group_name(self) -> str:
        return self.group or f"modelyard-{self.model}"

    @property
    def consumer_name(self) -> str:
        """Stable across restarts on one host, so a restarted consumer finds what it held."""
        return self.consumer or socket.gethostname()


async def run_stream(app: App, job: StreamJob) -> StreamStats:
    """Run ``job`` with the serving core of ``app`` until SIGTERM/SIGINT."""
    from modelyard.core.fleet_wiring import install_hot_swap
    from modelyard.core.model_cache import CacheKey

    serving = app.serving
    # As in a server: an alias move switches once the new version is warm, and a version that
    # fails to load leaves the old one scoring (else every message would wait for a fix).
    watcher, _ = install_hot_swap(app)
    mv = await serving.resolver.resolve(job.model, job.ref)
    await app.cache.load(CacheKey(mv.model, mv.version))
    serving.set_ready(True)
    metrics = _metrics(job.metrics_port)
    watching = asyncio.create_task(watcher.run())
    try:
        return await _consume(app, job, mv, metrics)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


async def _consume(
    app: App, job: StreamJob, mv: ModelVersion, metrics: StreamMetrics | None
) -> StreamStats:
    serving = app.serving
    async with _brokers(job) as (source, sink, dead_letter):
        consumer = StreamConsumer(
            ServingModel(serving, job.model, job.ref),
            source,
            sink,
            dead_letter,
            options=job.options,
            clock=app.clock,
            metrics=metrics,
        )
        log.info(
            "stream: %s:%d scores %s into %s (dead letters: %s), group %s, consumer %s",
            mv.model,
            mv.version,
            source.name,
            sink.name,
            dead_letter.name,
            job.group_name,
            job.consumer_name,
        )
        with _stop_on_signals(consumer):
            return await consumer.run()


@contextlib.asynccontextmanager
async def _brokers(job: StreamJob) -> AsyncIterator[tuple[Source, Sink, Sink]]:
    async with contextlib.AsyncExitStack() as stack:
        # Sinks first: creating their topics after a Kafka consumer joined its group may
        # make it join again.
        sink = await _reached("--sink", job.sink, open_sink(job.sink))
        stack.push_async_callback(sink.close)
        dead_url = job.dead_letter or dead_letter_url(job.source)
        dead = await _reached("--dead-letter", dead_url, open_sink(dead_url, "--dead-letter"))
        stack.push_async_callback(dead.close)
        source = await _reached(
            "--source",
            job.source,
            open_source(job.source, group=job.group_name, consumer=job.consumer_name),
        )
        stack.push_async_callback(source.close)
        yield source, sink, dead


async def _reached(flag: str, url: str, opening: Awaitable[_T]) -> _T:
    """``opening``, with a broker that cannot be reached (a client library's own error) turned
    into one UnavailableError naming the flag and URL."""
    try:
        return await opening
    except ModelYardError:
        raise
    except Exception as exc:
        raise UnavailableError(f"{flag} {url}: cannot reach the broker: {exc}") from exc


@contextlib.contextmanager
def _stop_on_signals(consumer: StreamConsumer) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _stopper(consumer, sig))
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (embedded use): the caller stops the consumer
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _stopper(consumer: StreamConsumer, sig: signal.Signals) -> Callable[[], None]:
    def stop() -> None:
        pending = consumer.in_flight
        log.info("stream: %s received, finishing %d message(s) in flight", sig.name, pending)
        consumer.stop()

    return stop


def _metrics(port: int | None) -> StreamMetrics | None:
    """Series on ``/metrics`` of ``port`` (0 = none); None when prometheus-client is missing."""
    try:
        metrics = StreamMetrics()
    except ImportError:
        if port:
            log.warning("stream: prometheus-client is not installed; no metrics on :%d", port)
        return None
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, registry=metrics.registry)
    return metrics
