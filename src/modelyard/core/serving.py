"""The dataplane over a registry and a model cache: what one server process serves.

resolve name -> version (TTL cache) -> validate against the signature -> lease the loaded runtime
from the model cache (single-flight load on miss) -> ``predict`` on an inference thread ->
select requested outputs. Traffic policies, batching and fallbacks wrap this in later layers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import weakref
from collections.abc import Callable
from typing import Any

from modelyard import __version__
from modelyard.core.batch_policy import BatchConfig, batching_enabled, ewma, run_inline
from modelyard.core.batcher import Batcher
from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.core.model_cache import CacheEntryInfo, CacheKey, ModelCache
from modelyard.core.model_config import derive_model_config
from modelyard.core.observer import BatchEvent, InferEvent, Observer, Observers
from modelyard.core.resolver import Resolver
from modelyard.core.statistics import InferenceStatistics
from modelyard.core.validation import encode_bytes_outputs, select_outputs, validate_inputs
from modelyard.errors import (
    DeadlineExceededError,
    InferenceError,
    InvalidInputError,
    ModelNotFoundError,
    ModelYardError,
    UnavailableError,
)
from modelyard.monitoring import tracing
from modelyard.registry.registry import ModelVersion, Registry
from modelyard.runtime import Runtime
from modelyard.types import (
    Array,
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelMetadata,
    ModelStatistics,
    RepositoryEntry,
    RequestContext,
    ServerMetadata,
)

log = logging.getLogger("modelyard.dataplane")

EXTENSIONS = (
    "model_repository",
    "model_configuration",
    "statistics",
    "binary_tensor_data",
    "schedule_policy",
    "parameters",
)


class ServingDataPlane(DataPlane):
    """The protocol-neutral API of one server process."""

    def __init__(
        self,
        registry: Registry,
        cache: ModelCache,
        *,
        resolve_ttl_s: float = 1.0,
        inference_threads: int = 4,
        max_tensor_elements: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        runtime_class: Callable[[str], type[Runtime]] | None = None,
        observer: Observer | None = None,
        inline_predict_s: float = 0.0,
        statistics: InferenceStatistics | None = None,
    ) -> None:
        """``statistics`` answers :meth:`model_statistics` and must receive this dataplane's
        events: :func:`~modelyard.app.build_app` passes one that is among ``observer``'s. When
        None, a fresh one is fed next to ``observer``."""
        self.registry = registry
        self.cache = cache
        self.resolver = Resolver(registry, ttl_s=resolve_ttl_s, clock=clock)
        self._clock = clock
        self._max_elements = max_tensor_elements
        self._threads = inference_threads
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=inference_threads, thread_name_prefix="modelyard-infer"
        )
        if runtime_class is None:
            from modelyard.runtimes import get_runtime_class

            runtime_class = get_runtime_class
        self._runtime_class = runtime_class
        self._ready = False
        self._draining = False
        self._in_flight = 0
        self._unloaded: set[str] = set()
        self._batchers: dict[CacheKey, tuple[Runtime, Batcher]] = {}
        self.observer: Observer = observer if observer is not None else Observers()
        if statistics is None:
            statistics = InferenceStatistics(clock)
            self.observer = Observers([self.observer, statistics])
        self.statistics = statistics
        # Recent predict duration per loaded runtime (weak: forgotten when the cache drops it).
        self._recent: weakref.WeakKeyDictionary[Runtime, float] = weakref.WeakKeyDictionary()
        self._inline_s = inline_predict_s
        if cache.on_event is None:  # model loads and evictions reach the same observers
            cache.on_event = self.observer.on_cache
        #: Set by the fleet feature: cold-start timings (seconds) of a loaded version, shown in
        #: the model metadata (``parameters.cold_start``) and the repository index (``reason``).
        self.cold_start: Callable[[CacheEntryInfo], dict[str, float]] | None = None

    # ---- life cycle ---------------------------------------------------------------------------
    def set_ready(self, ready: bool) -> None:
        self._ready = ready

    def start_draining(self) -> None:
        """Readiness turns false; requests keep being served until the frontends stop."""
        self._draining = True

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)

    # ---- health & metadata --------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self._ready and not self._draining

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="modelyard", version=__version__, extensions=EXTENSIONS)

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        mv = await self.resolver.resolve(name, version)
        versions = await asyncio.to_thread(self.registry.list_versions, name)
        sig = mv.manifest.signature
        params: dict[str, Any] = {"served_version": str(mv.version), "aliases": list(mv.aliases)}
        key = CacheKey(mv.model, mv.version)
        timings = self._cold_start_of(next((e for e in self.cache.entries() if e.key == key), None))
        if timings:
            params["cold_start"] = timings
        return ModelMetadata(
            name=name,
            versions=tuple(str(v.version) for v in versions),
            platform=mv.manifest.runtime,
            inputs=sig.inputs,
            outputs=sig.outputs,
            parameters=params,
        )

    async def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        mv = await self.resolver.resolve(name, version)
        return derive_model_config(name, str(mv.version), mv.manifest, instance_count=self._threads)

    async def model_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[ModelStatistics]:
        """This process's counts: of one version, of a model's versions (the one it would
        serve and every one with counts), or of every model in the registry (``name`` None)."""
        if name is None:
            if version is not None:
                raise InvalidInputError("statistics of a version need the model name")
            out: list[ModelStatistics] = []
            for info in await asyncio.to_thread(self.registry.list_models):
                if info.latest_version is not None:
                    try:
                        out.extend(await self._statistics_of(info.name))
                    except ModelNotFoundError:  # deleted since it was listed
                        continue
            return out
        if version is not None:
            mv = await self.resolver.resolve(name, version)
            return [self.statistics.get(name, str(mv.version))]
        return await self._statistics_of(name)

    async def _statistics_of(self, name: str) -> list[ModelStatistics]:
        served = str((await self.resolver.resolve(name, None)).version)
        versions = sorted({served, *self.statistics.versions(name)}, key=int)
        return [self.statistics.get(name, v) for v in versions]

    def _cold_start_of(self, entry: CacheEntryInfo | None) -> dict[str, float]:
        if self.cold_start is None or entry is None or entry.state != "READY":
            return {}
        return self.cold_start(entry)

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        """A model is ready when it resolves and its last load did not fail. Models not yet
        loaded count as ready: they load on their first request."""
        if name in self._unloaded:
            return False
        try:
            mv = await self.resolver.resolve(name, version)
        except ModelNotFoundError:
            return False
        key = CacheKey(mv.model, mv.version)
        return all(e.state != "FAILED" for e in self.cache.entries() if e.key == key)

    # ---- inference ----------------------------------------------------------------------------
    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        # Draining only turns readiness off: requests that still arrive are served, so that a
        # load balancer that has not yet noticed loses nothing.
        self._in_flight += 1
        started = self._clock.monotonic()
        response: InferResponse | None = None
        code = "OK"
        version_served = ""
        inferences = 0
        try:
            attributes = {"modelyard.model": name}
            with tracing.start_span(tracing.SPAN_DATAPLANE, ctx, attributes=attributes):
                mv = await self._resolve(name, version, ctx)
                version_served = str(mv.version)  # reported even when inference then fails
                response, inferences = await self._infer(name, mv, request, ctx)
            return response
        except ModelYardError as exc:
            code = exc.code.value
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"  # e.g. the losing copy of a hedged request: not a success
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            self._in_flight -= 1
            self.observer.on_infer(
                InferEvent(
                    endpoint=ctx.endpoint or name,
                    model=name,
                    version=version_served or self._resolved_version(name, version),
                    route=ctx.route or "",
                    code=code,
                    latency_s=self._clock.monotonic() - started,
                    request=request,
                    response=response,
                    ctx=ctx,
                    inferences=inferences,
                )
            )

    def _resolved_version(self, name: str, version: str | None) -> str:
        """The version a failed request had resolved to ("" when resolution itself failed), so
        errors count against the version that made them."""
        mv = self.resolver.cached(name, version)
        return "" if mv is None else str(mv.version)

    async def _resolve(self, name: str, version: str | None, ctx: RequestContext) -> ModelVersion:
        self._check_deadline(ctx)
        if name in self._unloaded:
            raise UnavailableError(
                f"model '{name}' was unloaded; load it again through the repository API"
            )
        return await self.resolver.resolve(name, version)

    async def _infer(
        self, name: str, mv: ModelVersion, request: InferRequest, ctx: RequestContext
    ) -> tuple[InferResponse, int]:
        """The response, and what the request counts for in the statistics' inference_count."""
        runtime_cls = self._runtime_class(mv.manifest.runtime)
        signature = mv.manifest.signature
        inputs = validate_inputs(
            signature,
            request.inputs,
            decode_bytes=not runtime_cls.accepts_raw_bytes,
            max_elements=self._max_elements,
        )
        # The rule behind the configuration's max_batch_size (> 0 exactly when batched). Triton
        # counts each row of a batched model's request as an inference, and a request to a model
        # without a batch dimension (max_batch_size 0) as one, whatever its first dimension.
        rows: int | None = None
        hints = mv.manifest.batching
        if batching_enabled(hints.max_batch_size, (s.shape for s in signature.inputs)):
            rows = next((a.shape[0] for a in inputs.values() if a.ndim), 0)
        async with self.cache.lease(CacheKey(mv.model, mv.version)) as runtime:
            outputs = await self._predict(runtime, inputs, ctx, mv, rows)
        outputs = select_outputs(signature, outputs, request.outputs)
        response = InferResponse(
            model_name=name,
            model_version=str(mv.version),
            outputs=encode_bytes_outputs(outputs),
            id=request.id,
        )
        return response, 1 if rows is None else rows

    async def _predict(
        self,
        runtime: Runtime,
        inputs: dict[str, Array],
        ctx: RequestContext,
        mv: ModelVersion,
        rows: int | None,
    ) -> dict[str, Array]:
        """``rows``: the request's rows when the version batches, None when it does not."""
        self._check_deadline(ctx)
        batcher: Batcher | None = None
        # A request that fills a batch by itself (a batch job's) gains nothing from the queue
        # and may exceed its row limit; one with no rows would never fill or age a batch. Both
        # run at once, like an unbatched model's.
        if rows is not None and 0 < rows < mv.manifest.batching.max_batch_size:
            batcher = self._batcher_for(runtime, mv)
        if batcher is None and run_inline(self._recent.get(runtime), self._inline_s):
            try:
                now = self._clock.monotonic()
                return self._predict_unbatched(runtime, mv, now, inputs, rows is not None)
            except ModelYardError:
                raise
            except Exception as exc:
                log.exception("inference failed for %s", mv.ref)
                raise InferenceError(
                    f"model '{mv.ref}' failed: {type(exc).__name__}: {exc}"
                ) from exc
        if batcher is None:
            loop = asyncio.get_running_loop()
            run = tracing.carry_context(self._predict_unbatched)
            enqueued = self._clock.monotonic()
            fut = loop.run_in_executor(
                self._executor, run, runtime, mv, enqueued, inputs, rows is not None
            )
            return await self._prediction(fut, ctx, mv)
        with tracing.start_span(tracing.SPAN_BATCHER, ctx):
            return await self._prediction(
                asyncio.ensure_future(batcher.submit(inputs, ctx.deadline)), ctx, mv
            )

    def _predict_unbatched(
        self,
        runtime: Runtime,
        mv: ModelVersion,
        enqueued: float,
        inputs: dict[str, Array],
        batch_dim: bool,
    ) -> dict[str, Array]:
        """On an inference thread: one ``predict``, reported to the observer as a batch;
        ``batch_dim``: the version batches (its first dimension is a batch dimension)."""
        started = self._clock.monotonic()
        failed = True
        try:
            with tracing.start_span(tracing.SPAN_RUNTIME, attributes={"modelyard.model": mv.ref}):
                outputs = runtime.predict(inputs)
            failed = False
            return outputs
        finally:
            first = next(iter(inputs.values()), None)
            rows = first.shape[0] if first is not None and first.ndim else 1
            elapsed = self._clock.monotonic() - started
            self._recent[runtime] = ewma(self._recent.get(runtime), elapsed)
            waited = started - enqueued
            event = BatchEvent(
                mv.model,
                str(mv.version),
                rows,
                1,
                waited,
                elapsed,
                waited,
                failed=failed,
                batch_dim=batch_dim,
            )
            self.observer.on_batch(event)

    async def _prediction(
        self, fut: asyncio.Future[dict[str, Array]], ctx: RequestContext, mv: ModelVersion
    ) -> dict[str, Array]:
        try:
            if ctx.deadline is None:
                return await fut
            remaining = ctx.deadline - self._clock.monotonic()
            return await asyncio.wait_for(fut, timeout=max(remaining, 0.0))
        except TimeoutError as exc:
            raise DeadlineExceededError(
                f"model '{mv.ref}' did not answer before the request deadline"
            ) from exc
        except ModelYardError:
            raise
        except Exception as exc:
            log.exception("inference failed for %s", mv.ref)
            raise InferenceError(f"model '{mv.ref}' failed: {type(exc).__name__}: {exc}") from exc

    def _batcher_for(self, runtime: Runtime, mv: ModelVersion) -> Batcher:
        """The batcher of a version whose manifest allows batching (``batching_enabled``: the
        caller checks); one per loaded runtime instance."""
        hints = mv.manifest.batching
        key = CacheKey(mv.model, mv.version)
        known = self._batchers.get(key)
        if known is not None and known[0] is runtime:
            return known[1]
        config = BatchConfig(
            max_batch_size=hints.max_batch_size, max_wait_s=hints.max_wait_us / 1e6
        )
        # Forget batchers of runtimes the cache has dropped, so they do not keep them alive.
        for stale in [k for k in self._batchers if not self.cache.is_loaded(k)]:
            del self._batchers[stale]
        batcher = Batcher(
            tracing.traced(runtime.predict, tracing.SPAN_RUNTIME, {"modelyard.model": mv.ref}),
            config,
            executor=self._executor,
            clock=self._clock,
            name=mv.ref,
            bucket=runtime.batch_bucket,
            on_batch=self.observer.on_batch,
            model=mv.model,
            version=str(mv.version),
        )
        self._batchers[key] = (runtime, batcher)
        return batcher

    def _check_deadline(self, ctx: RequestContext) -> None:
        if ctx.deadline is not None and ctx.deadline <= self._clock.monotonic():
            raise DeadlineExceededError("the request deadline passed before inference started")

    # ---- repository ---------------------------------------------------------------------------
    async def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        models = await asyncio.to_thread(self.registry.list_models)
        states = {e.key: e for e in self.cache.entries()}
        out: list[RepositoryEntry] = []
        for info in models:
            if info.latest_version is None:
                continue
            try:
                mv = await self.resolver.resolve(info.name, None)
            except ModelNotFoundError:
                continue
            entry = states.get(CacheKey(mv.model, mv.version))
            if entry is not None and entry.state == "READY":
                reason = " ".join(f"{k}={v:.4f}" for k, v in self._cold_start_of(entry).items())
                reason = f"cold start: {reason}" if reason else ""
                out.append(RepositoryEntry(info.name, str(mv.version), "READY", reason))
            elif not ready_only:
                state, reason = "UNAVAILABLE", "not loaded; loads on first request"
                if entry is not None:
                    state = "LOADING" if entry.state == "LOADING" else "UNAVAILABLE"
                    reason = entry.state.lower()
                out.append(RepositoryEntry(info.name, str(mv.version), state, reason))
        return out

    async def load_model(self, name: str) -> None:
        """Load and warm the model's default version now, and pin it (explicit loads stay)."""
        self.resolver.invalidate(name)
        self._unloaded.discard(name)
        mv = await self.resolver.resolve(name, None)
        key = CacheKey(mv.model, mv.version)
        await self.cache.load(key)
        self.cache.pin(key)

    async def unload_model(self, name: str) -> None:
        mv = await self.resolver.resolve(name, None)
        key = CacheKey(mv.model, mv.version)
        self._unloaded.add(name)
        self.cache.unpin(key)
        await self.cache.unload(key)
