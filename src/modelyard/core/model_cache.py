"""The model cache: loaded runtimes in this process, under a byte budget.

One thread-safe core serves both asyncio callers (the server) and plain threads (batch jobs,
embedded use). A cache hit is a dict lookup under a :class:`threading.Lock` - no thread hop, no
await. A miss joins the single in-progress load of that key, a :class:`concurrent.futures.Future`
that coroutines await through :func:`asyncio.wrap_future` and threads block on.

Loads run on an executor: ``loader(key)`` (fetch files, construct, ``runtime.load()``), then
``runtime.warmup()``, then ``runtime.memory_bytes()`` sizes the entry. Entries are evicted in the
order of the eviction policy (``gdsf`` by default, ``lru``: see :mod:`~modelyard.core.cache_policy`)
until the budget holds; entries with leases in flight and pinned entries are never evicted, so the
cache may stay over budget until those leases end (requests never wait for room).

``get`` hands out a runtime without protection: it may be evicted while the caller still uses it.
The serving path uses ``lease``, which keeps the entry loaded until the ``async with`` block ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator

from modelyard.core.cache_entry import CacheEntry, Counters, Disposal, running_future
from modelyard.core.cache_policy import (
    CacheEntryInfo,
    CacheKey,
    CacheState,
    CacheStats,
    EvictionCandidate,
    RequestHistory,
    check_policy,
    choose_evictions,
    choose_idle,
    gdsf_clock_after,
    gdsf_priority,
)
from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.model_loading import Loader, build_runtime, load_error
from modelyard.core.observer import CacheEvent
from modelyard.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    ModelLoadError,
    ModelYardError,
    UnavailableError,
)
from modelyard.runtime import Runtime

__all__ = ["CacheEntryInfo", "CacheKey", "CacheState", "CacheStats", "Loader", "ModelCache"]

log = logging.getLogger(__name__)


class ModelCache:
    """Loaded runtimes keyed by :class:`CacheKey`: single-flight loads, warm-up, eviction under
    ``budget_bytes`` by ``policy`` (``"gdsf"`` or ``"lru"``), idle unload after ``idle_ttl_s``,
    pins, failures remembered for ``failure_ttl_s``. ``frequency_window``: GDSF's request counts
    are halved every that many requests (see :class:`RequestHistory`). ``load_threads``: loads
    (and unloads) run on that many threads of an executor the cache owns, unless ``executor``
    is given. Safe to use from any thread and from any event loop."""

    def __init__(
        self,
        loader: Loader,
        *,
        budget_bytes: int,
        idle_ttl_s: float | None = None,
        failure_ttl_s: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        executor: concurrent.futures.Executor | None = None,
        on_event: Callable[[CacheEvent], None] | None = None,
        policy: str = "gdsf",
        frequency_window: int = 50_000,
        load_threads: int = 4,
    ) -> None:
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
            raise InvalidInputError(f"budget_bytes must be an int >= 1, got {budget_bytes!r}")
        if idle_ttl_s is not None and not idle_ttl_s > 0:
            raise InvalidInputError(f"idle_ttl_s must be > 0 or None, got {idle_ttl_s!r}")
        if not failure_ttl_s >= 0:
            raise InvalidInputError(f"failure_ttl_s must be >= 0, got {failure_ttl_s!r}")
        if isinstance(load_threads, bool) or not isinstance(load_threads, int) or load_threads < 1:
            raise InvalidInputError(f"load_threads must be an int >= 1, got {load_threads!r}")
        self._policy = check_policy(policy)
        self._gdsf = policy == "gdsf"
        self._history: RequestHistory[CacheKey] = RequestHistory(frequency_window)
        self._gdsf_clock = 0.0  # GDSF's L: the highest priority evicted so far
        self._loader = loader
        self._budget = budget_bytes
        self._idle_ttl = idle_ttl_s
        self._failure_ttl = failure_ttl_s
        self._clock = clock
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=load_threads, thread_name_prefix="modelyard-cache"
        )
        self._lock = threading.Lock()
        # Insertion order is recency order (move_to_end on use): the LRU tie-break.
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self._draining: dict[int, CacheEntry] = {}
        self._pinned: set[CacheKey] = set()
        self._closed = False
        self._bytes = 0
        self._n = Counters()
        #: Told about loads, load failures, evictions and unloads (outside the cache's lock).
        self.on_event = on_event
        self._events: list[CacheEvent] = []

    # ---- requests ----------------------------------------------------------------------------
    async def get(self, key: CacheKey) -> Runtime:
        """The loaded runtime of ``key``, loading it if needed. Not protected from eviction."""
        entry, runtime = self._acquire(key, lease=False, request=True)
        return runtime if runtime is not None else await asyncio.wrap_future(entry.future)

    def get_sync(self, key: CacheKey) -> Runtime:
        """Blocking :meth:`get` for threads (never call it on an event loop thread)."""
        entry, runtime = self._acquire(key, lease=False, request=True)
        return runtime if runtime is not None else entry.future.result()

    @contextlib.asynccontextmanager
    async def lease(self, key: CacheKey) -> AsyncIterator[Runtime]:
        """``async with cache.lease(key) as runtime``: the entry is not evicted or unloaded
        until the block ends."""
        entry, runtime = self._acquire(key, lease=True, request=True)
        try:  # also gives the reservation back when the load fails or the waiter is cancelled
            yield runtime if runtime is not None else await asyncio.wrap_future(entry.future)
        finally:
            self._release(entry)

    @contextlib.contextmanager
    def lease_sync(self, key: CacheKey) -> Iterator[Runtime]:
        """Blocking :meth:`lease` for threads."""
        entry, runtime = self._acquire(key, lease=True, request=True)
        try:
            yield runtime if runtime is not None else entry.future.result()
        finally:
            self._release(entry)

    async def load(self, key: CacheKey) -> Runtime:
        """Explicit (pre)load through the same single-flight path. Unlike a request, it retries
        a remembered failure at once and does not count as a hit or miss."""
        entry, runtime = self._acquire(key, lease=False, request=False)
        return runtime if runtime is not None else await asyncio.wrap_future(entry.future)

    def _acquire(
        self, key: CacheKey, *, lease: bool, request: bool
    ) -> tuple[CacheEntry, Runtime | None]:
        start = False
        with self._lock:
            if self._closed:
                raise UnavailableError("the model cache is closed")
            now = self._clock.monotonic()
            entry = self._entries.get(key)
            if entry is not None and entry.state is CacheState.FAILED:
                if not request or now >= entry.failed_at + self._failure_ttl:
                    del self._entries[key]
                    entry = None
            if entry is None:
                entry = self._entries[key] = CacheEntry(key, now)
                self._n.loads += 1
                start = True
            elif entry.state is CacheState.READY:
                self._entries.move_to_end(key)
                entry.last_used = now
                entry.in_flight += lease
                self._n.hits += request
                if request and self._gdsf:
                    frequency = self._history.request(key)
                    entry.priority = gdsf_priority(
                        self._gdsf_clock, frequency, entry.cost_s, entry.bytes
                    )
                return entry, entry.runtime
            if request and self._gdsf:
                self._history.request(key)
            self._n.misses += request
            if entry.error is not None:
                raise entry.error.with_traceback(entry.error_tb)
            entry.in_flight += lease
        if start:
            self._submit(self._run_load, entry, on_refused=self._refused)
        return entry, None

    def _release(self, entry: CacheEntry) -> None:
        disposals: list[Disposal] = []
        with self._lock:
            entry.in_flight -= 1
            if self._entries.get(entry.key) is entry and entry.state is CacheState.READY:
                entry.last_used = self._clock.monotonic()
                self._entries.move_to_end(entry.key)
            if entry.in_flight == 0:
                if entry.state is CacheState.UNLOADING:
                    disposals = self._take(entry)
                elif self._bytes > self._budget:
                    disposals = self._evict_over_budget(exclude=None)
        self._dispose_later(disposals)
        self._emit()

    # ---- loading -----------------------------------------------------------------------------
    def _run_load(self, entry: CacheEntry) -> None:
        try:
            runtime, size, load_s, warm_s = build_runtime(
                self._loader,
                entry.key,
                budget=self._budget,
                clock=self._clock,
                dispose=self._unload,
            )
        except BaseException as exc:  # every failure must complete the future waiters block on
            error = exc
            if isinstance(exc, ChecksumMismatchError):
                # The server's fault, not the client's (a 503, not a 400), and its details
                # (store URLs, hashes) are for the log, which _fail writes, not for clients.
                log.warning("model %s failed verification: %s", entry.key, exc.message)
                error = ModelLoadError(
                    f"model {entry.key} cannot be served: a file of it failed verification "
                    "(the server log names it)"
                )
                error.__cause__ = exc
            elif not isinstance(exc, ModelYardError):
                error = load_error(entry.key, "load", exc)
                error.__cause__ = exc
            self._fail(entry, error)
            return
        self._finish(entry, runtime, size, load_s, warm_s)

    def _finish(
        self, entry: CacheEntry, runtime: Runtime, size: int, load_s: float, warm_s: float
    ) -> None:
        disposals: list[Disposal] = []
        with self._lock:
            closed = self._closed
            if not closed:
                entry.state = CacheState.READY
                entry.runtime, entry.bytes = runtime, size
                entry.load_seconds, entry.warmup_seconds = load_s, warm_s
                entry.loaded_at = self._clock.wall()
                entry.last_used = self._clock.monotonic()
                self._bytes += size
                self._n.load_seconds_total += load_s + warm_s
                self._note("load", entry.key, seconds=load_s + warm_s, size=size)
                disposals = self._evict_over_budget(exclude=entry.key)
                if self._gdsf:  # after the evictions it caused, from the clock they moved
                    self._price(entry)
        if closed:
            self._dispose(runtime, None)
            self._fail(entry, UnavailableError(f"the model cache closed while loading {entry.key}"))
            return
        self._emit()  # before waiters resume: they see the load counted
        entry.future.set_result(runtime)
        for victim, done in disposals:  # already on a worker thread: unload here
            self._dispose(victim, done)

    def _fail(self, entry: CacheEntry, error: BaseException) -> None:
        with self._lock:
            entry.state = CacheState.FAILED
            entry.error, entry.error_tb = error, error.__traceback__
            entry.failed_at = self._clock.monotonic()
            self._n.load_failures += 1
            self._note("load_failure", entry.key)
        # Once per failed attempt: requests that then hit the remembered failure log nothing.
        log.warning("loading model %s failed: %s", entry.key, error)
        self._emit()
        entry.future.set_exception(error)

    def _refused(self, entry: CacheEntry) -> None:
        self._fail(entry, UnavailableError(f"cannot load {entry.key}: the executor is shut down"))

    # ---- eviction and unloading --------------------------------------------------------------
    def _price(self, entry: CacheEntry) -> None:
        """Lock held. GDSF: the cost and priority of a just loaded entry."""
        entry.cost_s = self._history.load_cost(entry.key, entry.load_seconds + entry.warmup_seconds)
        frequency = self._history.frequency(entry.key)
        entry.priority = gdsf_priority(self._gdsf_clock, frequency, entry.cost_s, entry.bytes)

    def _evict_over_budget(self, exclude: CacheKey | None) -> list[Disposal]:
        """Lock held. Pops the policy's victims until the budget holds (or nothing evictable
        is left)."""
        if self._bytes <= self._budget:
            return []
        candidates = self._candidates(exclude)
        victims = choose_evictions(candidates, self._bytes, self._budget, policy=self._policy)
        if self._gdsf and victims:
            self._gdsf_clock = gdsf_clock_after(self._gdsf_clock, candidates, victims)
        self._n.evictions += len(victims)
        return self._pop(victims, "evict")

    def _candidates(self, exclude: CacheKey | None) -> list[EvictionCandidate[CacheKey]]:
        pinned = self._pinned
        return [
            EvictionCandidate(e.key, e.bytes, e.last_used, e.in_flight, e.key in pinned, e.priority)
            for e in self._entries.values()
            if e.state is CacheState.READY and e.key != exclude
        ]

    def _pop(self, keys: list[CacheKey], kind: str) -> list[Disposal]:
        disposals: list[Disposal] = []
        for key in keys:
            entry = self._entries.pop(key)
            entry.state = CacheState.UNLOADING
            self._note(kind, key, size=entry.bytes)
            disposals += self._take(entry)
        return disposals

    def _note(self, kind: str, key: CacheKey, *, seconds: float = 0.0, size: int = 0) -> None:
        """Lock held. Queues an event for :meth:`_emit`."""
        if self.on_event is not None:
            self._events.append(CacheEvent(kind, key.model, str(key.version), seconds, size))

    def _emit(self) -> None:
        """Lock not held: hands the queued events to ``on_event`` (which may call back in)."""
        if not self._events or self.on_event is None:
            return
        with self._lock:
            events, self._events = self._events, []
        for event in events:
            try:
                self.on_event(event)
            except Exception:
                log.exception("model cache on_event failed for %s", event)

    def _take(self, entry: CacheEntry) -> list[Disposal]:
        """Lock held. Claims the entry's runtime so exactly one caller unloads it."""
        self._draining.pop(id(entry), None)
        runtime, entry.runtime = entry.runtime, None
        if runtime is None:
            return []
        self._bytes -= entry.bytes
        return [(runtime, entry.unload_done)]

    def _unload(self, runtime: Runtime) -> None:
        self._dispose(runtime, None)

    def _dispose(self, runtime: Runtime, done: concurrent.futures.Future[None] | None) -> None:
        try:
            runtime.unload()
        except Exception:
            log.exception("runtime.unload() failed; dropping the runtime anyway")
        finally:
            if done is not None and not done.done():
                done.set_result(None)

    def _dispose_later(self, disposals: list[Disposal]) -> None:
        for runtime, done in disposals:
            self._submit(self._dispose, runtime, done, on_refused=None)

    def _submit(
        self, fn: Callable[..., None], *args: object, on_refused: Callable[..., None] | None
    ) -> None:
        try:
            self._executor.submit(fn, *args)
        except RuntimeError:  # executor shut down (closing): fail the load / unload inline
            (on_refused or fn)(*args)

    async def unload(self, key: CacheKey) -> bool:
        """Unload ``key`` (even when pinned; the pin stays for later loads) after its in-flight
        leases end. New requests meanwhile start a fresh load. Returns False when nothing was
        loaded (a remembered failure is forgotten, so the next request retries at once)."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is None or entry.state is CacheState.FAILED:
                    self._entries.pop(key, None)
                    return False
                if entry.state is CacheState.READY:
                    del self._entries[key]
                    entry.state = CacheState.UNLOADING
                    done = entry.unload_done = running_future()
                    self._draining[id(entry)] = entry
                    self._n.unloads += 1
                    self._note("unload", key, size=entry.bytes)
                    disposals = self._take(entry) if entry.in_flight == 0 else []
                    break
                loading = entry.future
            with contextlib.suppress(Exception):  # a failed load leaves nothing to unload
                await asyncio.wrap_future(loading)
        self._dispose_later(disposals)
        self._emit()
        await asyncio.wrap_future(done)
        return True

    def evict_idle(self) -> list[CacheKey]:
        """One idle-unload pass at ``clock.monotonic()``; also forgets expired failures."""
        with self._lock:
            now = self._clock.monotonic()
            expired = [
                k
                for k, e in self._entries.items()
                if e.state is CacheState.FAILED and now >= e.failed_at + self._failure_ttl
            ]
            for k in expired:
                del self._entries[k]
            if self._idle_ttl is None:
                return []
            idle = choose_idle(self._candidates(None), now, self._idle_ttl)
            self._n.idle_unloads += len(idle)
            disposals = self._pop(idle, "idle_unload")
        self._dispose_later(disposals)
        self._emit()
        return idle

    def pin(self, key: CacheKey) -> None:
        """Never evict ``key`` (by budget or idleness). Does not load it: ``await load(key)``."""
        with self._lock:
            self._pinned.add(key)

    def unpin(self, key: CacheKey) -> None:
        with self._lock:
            self._pinned.discard(key)
            disposals = self._evict_over_budget(exclude=None)
        self._dispose_later(disposals)
        self._emit()

    # ---- introspection -----------------------------------------------------------------------
    def is_loaded(self, key: CacheKey) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry.state is CacheState.READY

    def entries(self) -> list[CacheEntryInfo]:
        with self._lock:
            return [
                CacheEntryInfo(
                    *(e.key, e.state, e.bytes, e.last_used, e.in_flight, e.key in self._pinned),
                    *(e.load_seconds, e.warmup_seconds, e.loaded_at),
                    error=None if e.error is None else str(e.error),
                )
                for e in [*self._entries.values(), *self._draining.values()]
            ]

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                **dataclasses.asdict(self._n), bytes_in_use=self._bytes, budget_bytes=self._budget
            )

    @property
    def policy(self) -> str:
        """The eviction policy: ``"gdsf"`` or ``"lru"``."""
        return self._policy

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Unload everything (in-flight leases are not waited for: stop traffic first), then
        shut down the executor if the cache owns it. Blocks until loads and unloads finish."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loading = [e.future for e in self._entries.values() if e.state is CacheState.LOADING]
        concurrent.futures.wait(loading)
        with self._lock:
            taken = [
                d
                for e in [*self._entries.values(), *self._draining.values()]
                for d in self._take(e)
            ]
            self._entries.clear()
        disposals: list[Disposal] = [(rt, done or running_future()) for rt, done in taken]
        self._dispose_later(disposals)
        concurrent.futures.wait([done for _, done in disposals if done is not None])
        if self._owns_executor:
            self._executor.shutdown(wait=True)
