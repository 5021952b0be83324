"""Shadows: copy a fraction of an endpoint's requests to other versions and compare the outputs.

:class:`ShadowRunner` is the :class:`~modelyard.traffic.shadow_hook.ShadowDispatcher` the traffic
layer calls right after it dispatched the primary. It never delays the client: ``dispatch``
only samples and reserves a slot; the shadow starts once the primary has answered (so a request
never competes with its own shadow). Shadows only use capacity the primaries leave idle:
none is sent while the serving event loop is busy (its thread used more than ``max_busy`` of a
CPU in the last 100 ms) or lags behind, and at most ``max_concurrency`` are in flight per
process; the others are dropped and counted, never queued.

Where a shadow runs is the :class:`ShadowExecutor`'s business:

* :class:`~modelyard.traffic.shadow_process.ProcessShadows` (the default,
  ``shadow_isolation: process``) sends it to a helper process at idle CPU priority: the kernel
  gives the shadow model only CPU time nobody else wants, and it never holds the serving
  process's GIL or event loop. The serving process only pays the bookkeeping.
* :class:`InlineShadows` (``shadow_isolation: inline``) runs it on the serving core in this
  process.

Each finished shadow is compared with the primary (:func:`compare_outputs`, per
``spec.shadows[i].compare``) and the outcome goes to the stats collector: rows compared and
agreed, latency delta (shadow minus primary), and, through the observers, the shadow's requests
and errors (route ``shadow``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.core.observer import Observer
from modelyard.errors import ModelYardError
from modelyard.traffic.shadow_log import ShadowErrorLog
from modelyard.traffic.spec import Compare, EndpointSpec, Shadow
from modelyard.traffic.stats import (
    SHADOW_ROUTE,
    StatsCollector,
    version_number,
)
from modelyard.types import Array, InferRequest, InferResponse, RequestContext

log = logging.getLogger("modelyard.shadow")

#: A shadow is dropped when the event loop took longer than this to get to it after its
#: primary answered: the loop is behind, and more work now would delay other clients.
DEFAULT_MAX_LOOP_LAG_S = 0.002
#: Shadows are dropped while the event loop's thread was busy more than this share of the
#: last window (setting ``shadow_max_loop_busy``): shadows only take capacity the primaries
#: leave idle.
DEFAULT_MAX_BUSY = 0.6
LOAD_WINDOW_S = 0.1


class ProcessLoad:
    """The share of one CPU that the serving event loop's thread used in the last
    ``window_s``: the loop is what every request of this process goes through, so its idle
    share is the capacity left for shadows (their bookkeeping runs on it in both modes).
    Called on the loop thread; cheap enough for every request: it re-measures at most once
    per window."""

    def __init__(
        self,
        *,
        window_s: float = LOAD_WINDOW_S,
        clock: Clock = SYSTEM_CLOCK,
        cpu: Callable[[], float] = time.thread_time,
        cpus: int = 1,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._cpu = cpu
        self._cpus = cpus
        self._since: float | None = None
        self._cpu_since = 0.0
        self._value = 0.0

    def utilization(self) -> float:
        now = self._clock.monotonic()
        if self._since is None:
            self._since, self._cpu_since = now, self._cpu()
        elif now - self._since >= self.window_s:
            cpu = self._cpu()
            self._value = (cpu - self._cpu_since) / (now - self._since) / self._cpus
            self._since, self._cpu_since = now, cpu
        return self._value


# ---- comparison (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Comparison:
    """Rows compared (the first dim of the compared output; 1 for a scalar) and rows agreeing."""

    rows: int
    agreed: int


def compare_outputs(
    compare: Compare, primary: Mapping[str, Array], shadow: Mapping[str, Array]
) -> Comparison:
    """Compare one output (``compare.output``, default the primary's first) row by row.

    ``exact``: equal values; ``argmax``: the same index of the largest value along the last
    axis (the same class; an output of one value per row, e.g. a label, compares exactly);
    ``tolerance``: ``|shadow - primary| <= atol + rtol * |primary|``
    everywhere in the row (non-numeric outputs compare exactly). A missing output or another
    shape disagrees on every row.
    """
    name = compare.output if compare.output is not None else next(iter(primary), None)
    if name is None or name not in primary:
        return Comparison(1, 0)
    p = np.asarray(primary[name])
    rows = int(p.shape[0]) if p.ndim else 1
    if name not in shadow:
        return Comparison(rows, 0)
    s = np.asarray(shadow[name])
    if s.shape != p.shape:
        return Comparison(rows, 0)
    numeric = _numeric(p) and _numeric(s)
    if compare.kind == "argmax" and numeric and p.ndim >= 2:
        agree = (_argmax_rows(p) == _argmax_rows(s)).all(axis=1)
    elif compare.kind == "tolerance" and numeric:
        close = np.isclose(s, p, atol=compare.atol, rtol=compare.rtol, equal_nan=True)
        agree = _rows(close).all(axis=1)
    else:
        agree = _rows(np.asarray(p == s)).all(axis=1)
    return Comparison(rows, int(np.count_nonzero(agree)))


def _rows(a: Array) -> Array:
    """``a`` as (rows, values): a scalar or a vector of scores is one row."""
    if a.ndim == 0:
        return a.reshape(1, 1)
    return a.reshape(a.shape[0], -1)


def _argmax_rows(a: Array) -> Array:
    """Per row, the index of the largest value along the last axis (per position when a row
    holds several score vectors). ``a`` has at least 2 dims."""
    positions = int(np.prod(a.shape[1:-1]))
    if a.shape[-1] == 0:
        return np.zeros((a.shape[0], positions), dtype=np.int64)
    return np.asarray(a.argmax(axis=-1)).reshape(a.shape[0], positions)


def _numeric(a: Array) -> bool:
    return a.dtype.kind in "biuf"


# ---- executors -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One shadow to run: a copy of ``request`` for ``shadow``, whose primary answered ``primary``
    (None: the primary failed) after ``primary_s``. ``version`` labels drops (0 = not known)."""

    endpoint: str
    shadow: Shadow
    version: int
    request: InferRequest
    primary: InferResponse | None
    primary_s: float
    ctx: RequestContext


class ShadowExecutor(Protocol):
    """Runs shadow jobs somewhere and records their outcomes (:func:`record_outcome`)."""

    def submit(self, job: ShadowJob, done: Callable[[int], None]) -> bool:
        """Start ``job`` and return at once; call ``done`` when it is over, whatever the
        outcome, with the version that ran it (0: not known). False: it was not started
        (counted as dropped by the caller)."""
        ...


def shadow_label(model: str, version: int) -> str:
    """How a shadow is named in its outcome metric: ``model@version``."""
    return f"{model}@{version}"


def record_outcome(
    stats: StatsCollector,
    observer: Observer,
    job: ShadowJob,
    version: int,
    compared: Comparison | None,
    shadow_s: float,
) -> None:
    """Record one shadow that answered: compared with the primary, or (``compared`` None) the
    primary had no answer to compare with."""
    label = shadow_label(job.shadow.model, version)
    if compared is None:
        observer.on_shadow(job.endpoint, label, "not_compared")
        stats.record_shadow(
            job.endpoint, job.shadow.model, version, compared=0, agreed=0, latency_delta_s=None
        )
        return
    outcome = "match" if compared.agreed == compared.rows else "mismatch"
    observer.on_shadow(job.endpoint, label, outcome)
    stats.record_shadow(
        job.endpoint,
        job.shadow.model,
        version,
        compared=compared.rows,
        agreed=compared.agreed,
        latency_delta_s=shadow_s - job.primary_s,
    )


class InlineShadows:
    """Runs shadows on the serving core of this process, as event-loop tasks. The serving
    core's observers count their requests and errors."""

    def __init__(
        self, inner: DataPlane, stats: StatsCollector, clock: Clock, observer: Observer
    ) -> None:
        self.inner = inner
        self.stats = stats
        self.observer = observer
        self._clock = clock
        self._errors = ShadowErrorLog(log, clock)
        self._tasks: set[asyncio.Task[int]] = set()

    def submit(self, job: ShadowJob, done: Callable[[int], None]) -> bool:
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)

        def finished(_: asyncio.Task[int]) -> None:
            self._tasks.discard(task)
            done(0 if task.cancelled() or task.exception() is not None else task.result())

        task.add_done_callback(finished)
        return True

    async def _run(self, job: ShadowJob) -> int:
        """Run, compare and record ``job``; returns the version that answered (0: none)."""
        shadow = job.shadow
        ref = None if shadow.version is None else str(shadow.version)
        started = self._clock.monotonic()
        try:
            answer: InferResponse | None = await self.inner.infer(
                shadow.model, ref, job.request, job.ctx
            )
        except ModelYardError as exc:
            answer = None  # counted as an error of the shadow by the serving core's observer
            label = shadow_label(shadow.model, job.version) if job.version else shadow.label()
            self._errors.failed(label, job.endpoint, exc.message)
        except Exception:
            log.exception("shadow %s of endpoint %s failed", shadow.label(), job.endpoint)
            answer = None
        shadow_s = self._clock.monotonic() - started
        if answer is None:
            self.observer.on_shadow(job.endpoint, shadow_label(shadow.model, job.version), "error")
            return 0
        compared = (
            None
            if job.primary is None
            else compare_outputs(shadow.compare, job.primary.outputs, answer.outputs)
        )
        version = version_number(answer.model_version)
        record_outcome(self.stats, self.observer, job, version, compared, shadow_s)
        return version


# ---- dispatcher ----------------------------------------------------------------------------------
class ShadowRunner:
    """Samples an endpoint's shadows and hands them to an executor (implements
    ``ShadowDispatcher``).

    ``inner`` is the serving core (shadows name models, not endpoints); it runs the shadows
    when no ``executor`` is given (:class:`InlineShadows`). ``resolve_cached`` maps (model,
    version ref) to a version number when it is known without I/O, to label drops; where it
    does not know (e.g. the shadow runs in the helper process, so this process never loads
    it), drops are labelled with the version the shadow last ran on, so that one shadow is
    one label.
    """

    def __init__(
        self,
        inner: DataPlane,
        stats: StatsCollector,
        *,
        max_concurrency: int,
        clock: Clock = SYSTEM_CLOCK,
        rnd: Callable[[], float] = random.random,
        resolve_cached: Callable[[str, str | None], int | None] | None = None,
        max_loop_lag_s: float = DEFAULT_MAX_LOOP_LAG_S,
        max_busy: float = DEFAULT_MAX_BUSY,
        load: ProcessLoad | None = None,
        executor: ShadowExecutor | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.stats = stats
        self.observer = observer if observer is not None else Observer()
        self.max_concurrency = max_concurrency
        self.max_loop_lag_s = max_loop_lag_s
        self.max_busy = max_busy
        self.load = load if load is not None else ProcessLoad(clock=clock)
        self.executor: ShadowExecutor = (
            executor if executor is not None else InlineShadows(inner, stats, clock, self.observer)
        )
        self._clock = clock
        self._rnd = rnd
        self._resolve_cached = resolve_cached
        #: (model, version ref) -> the version that last answered that shadow.
        self._last_version: dict[tuple[str, str | None], int] = {}
        self._reserved = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        #: Shadows not sent (too many in flight, box busy, executor refused) since start.
        self.dropped = 0

    @property
    def in_flight(self) -> int:
        """Shadows reserved or running now."""
        return self._reserved

    def dispatch(
        self,
        endpoint: EndpointSpec,
        request: InferRequest,
        primary: asyncio.Future[InferResponse],
        ctx: RequestContext,
    ) -> None:
        if not endpoint.shadows:
            return
        dispatched_at = self._clock.monotonic()
        done_at: list[float] = []
        chosen: list[Shadow] = []
        busy = self.load.utilization() > self.max_busy
        for shadow in endpoint.shadows:
            if shadow.fraction < 1.0 and self._rnd() >= shadow.fraction:
                continue
            if busy or self._reserved >= self.max_concurrency:
                self._drop(endpoint.name, shadow)
                continue
            self._reserved += 1
            chosen.append(shadow)
        if not chosen:
            return
        loop = asyncio.get_running_loop()

        def primary_done(_: asyncio.Future[InferResponse]) -> None:
            done_at.append(self._clock.monotonic())
            # One more loop turn: the primary's own continuation (encoding the reply) runs first.
            loop.call_soon(start)

        def start() -> None:
            if self._clock.monotonic() - done_at[0] > self.max_loop_lag_s:
                # The event loop is behind (the box is busy): a shadow now would delay clients.
                for shadow in chosen:
                    self._drop(endpoint.name, shadow)
                self._release(len(chosen))
                return
            reply = _answer(primary)
            for shadow in chosen:
                self._start(endpoint.name, shadow, request, reply, ctx, done_at[0] - dispatched_at)

        primary.add_done_callback(primary_done)

    def _start(
        self,
        endpoint: str,
        shadow: Shadow,
        request: InferRequest,
        reply: InferResponse | None,
        ctx: RequestContext,
        primary_s: float,
    ) -> None:
        version = self._version(shadow)
        if _answered_by(reply) == (shadow.model, version):
            self._release(1)  # the primary was this very version (e.g. a rollout's candidate)
            return
        job = ShadowJob(
            endpoint=endpoint,
            shadow=shadow,
            version=version,
            request=request,
            primary=reply,
            primary_s=primary_s,
            ctx=RequestContext(
                request_id=f"{ctx.request_id}-shadow",
                deadline=ctx.deadline,
                routing_key=ctx.routing_key,
                headers=ctx.headers,
                endpoint=endpoint,
                route=SHADOW_ROUTE,
            ),
        )
        if not self.executor.submit(job, lambda ran_on: self._finished(shadow, ran_on)):
            self._drop(endpoint, shadow)
            self._release(1)

    def _finished(self, shadow: Shadow, version: int) -> None:
        if version:
            self._last_version[(shadow.model, _ref(shadow))] = version
        self._release(1)

    def _drop(self, endpoint: str, shadow: Shadow) -> None:
        self.dropped += 1
        version = self._version(shadow)
        self.stats.record_shadow_drop(endpoint, shadow.model, version)
        self.observer.on_shadow(endpoint, shadow_label(shadow.model, version), "dropped")

    def _release(self, n: int) -> None:
        self._reserved -= n
        if self._reserved == 0:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    def _version(self, shadow: Shadow) -> int:
        if isinstance(shadow.version, int):
            return shadow.version
        if self._resolve_cached is not None:
            found = self._resolve_cached(shadow.model, shadow.version)
            if found:
                return found
        return self._last_version.get((shadow.model, _ref(shadow)), 0)

    async def drain(self) -> None:
        """Wait until no shadow is reserved or running (tests; shutdown). The primaries of
        reserved shadows must finish for this to return."""
        if self._reserved == 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter


def _ref(shadow: Shadow) -> str | None:
    return None if shadow.version is None else str(shadow.version)


def _answered_by(reply: InferResponse | None) -> tuple[str, int] | None:
    """(model, version) that produced the traffic layer's answer (its ``answered_by`` note)."""
    note = None if reply is None else reply.parameters.get("answered_by")
    if not isinstance(note, str):
        return None
    model, _, version = note.rpartition(":")
    return (model, int(version)) if version.isdigit() else None


def _answer(primary: asyncio.Future[Any]) -> InferResponse | None:
    """The primary's response, or None when it failed or was cancelled (not raised here: the
    traffic layer reports the primary's outcome)."""
    if primary.cancelled() or primary.exception() is not None:
        return None
    result = primary.result()
    return result if isinstance(result, InferResponse) else None
