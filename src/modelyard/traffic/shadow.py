"""Shadows: copy a fraction of an endpoint's requests to other versions and compare the outputs.

:class:`ShadowRunner` is the :class:`~modelyard.traffic.shadow_hook.ShadowDispatcher` the traffic
layer calls right after it dispatched the primary. It never delays the client: ``dispatch``
only samples and reserves a slot; the shadow starts once the primary has answered (so a request
never competes with its own shadow) and runs on the serving core. Shadows only use capacity the
primaries leave idle: at most ``max_concurrency`` are in flight per process, and none is sent
while the process is busy (it used more than ``max_busy`` of its CPUs in the last 100 ms) or
its event loop lags behind; those are dropped and counted, never queued.

Each finished shadow is compared with the primary (:func:`compare_outputs`, per
``spec.shadows[i].compare``) and the outcome goes to the stats collector: rows compared and
agreed, latency delta (shadow minus primary), and, through the serving core's observer, the
shadow's requests and errors (route ``shadow``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.errors import ModelYardError
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
#: Shadows are dropped while this process used more than this share of the CPUs it may run on
#: in the last window: shadows only take capacity the primaries leave idle.
DEFAULT_MAX_BUSY = 0.5
LOAD_WINDOW_S = 0.1


def _usable_cpus() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


class ProcessLoad:
    """The share of the CPUs this process may run on that it used in the last ``window_s``
    (every thread: the event loop's and inference). Cheap enough for every request: it
    re-measures at most once per window."""

    def __init__(
        self,
        *,
        window_s: float = LOAD_WINDOW_S,
        clock: Clock = SYSTEM_CLOCK,
        cpu: Callable[[], float] = time.process_time,
        cpus: int | None = None,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._cpu = cpu
        self._cpus = cpus if cpus is not None else _usable_cpus()
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


# ---- dispatcher ----------------------------------------------------------------------------------
class ShadowRunner:
    """Runs an endpoint's shadows off the request path (implements ``ShadowDispatcher``).

    ``inner`` is the serving core (shadows name models, not endpoints). ``resolve_cached``
    maps (model, version ref) to a version number when it is known without I/O, to label drops.
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
    ) -> None:
        self.inner = inner
        self.stats = stats
        self.max_concurrency = max_concurrency
        self.max_loop_lag_s = max_loop_lag_s
        self.max_busy = max_busy
        self.load = load if load is not None else ProcessLoad(clock=clock)
        self._clock = clock
        self._rnd = rnd
        self._resolve_cached = resolve_cached
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        #: Shadows not sent because ``max_concurrency`` were in flight (since start).
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
            primary_s = done_at[0] - dispatched_at
            if self._clock.monotonic() - done_at[0] > self.max_loop_lag_s:
                # The event loop is behind (the box is busy): a shadow now would delay clients.
                for shadow in chosen:
                    self._drop(endpoint.name, shadow)
                self._release(len(chosen))
                return
            for shadow in chosen:
                coro = self._run(endpoint.name, shadow, request, primary, ctx, primary_s)
                task = loop.create_task(coro)
                self._tasks.add(task)
                task.add_done_callback(self._finished)

        primary.add_done_callback(primary_done)

    def _drop(self, endpoint: str, shadow: Shadow) -> None:
        self.dropped += 1
        self.stats.record_shadow_drop(endpoint, shadow.model, self._version(shadow))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._release(1)

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
        if self._resolve_cached is None:
            return 0
        return self._resolve_cached(shadow.model, shadow.version) or 0

    async def _run(
        self,
        endpoint: str,
        shadow: Shadow,
        request: InferRequest,
        primary: asyncio.Future[InferResponse],
        ctx: RequestContext,
        primary_s: float,
    ) -> None:
        shadow_ctx = RequestContext(
            request_id=f"{ctx.request_id}-shadow",
            deadline=ctx.deadline,
            routing_key=ctx.routing_key,
            headers=ctx.headers,
            endpoint=endpoint,
            route=SHADOW_ROUTE,
        )
        if _answered_by(_answer(primary)) == (shadow.model, self._version(shadow)):
            return  # the primary was this very version (e.g. a rollout's candidate route)
        ref = None if shadow.version is None else str(shadow.version)
        started = self._clock.monotonic()
        try:
            answer: InferResponse | None = await self.inner.infer(
                shadow.model, ref, request, shadow_ctx
            )
        except ModelYardError:
            answer = None  # counted as an error of the shadow by the serving core's observer
        except Exception:
            log.exception("shadow %s of endpoint %s failed", shadow.label(), endpoint)
            answer = None
        shadow_s = self._clock.monotonic() - started
        if answer is None:
            return
        version = version_number(answer.model_version)
        reply = _answer(primary)
        if reply is None:
            self.stats.record_shadow(
                endpoint, shadow.model, version, compared=0, agreed=0, latency_delta_s=None
            )
            return
        result = compare_outputs(shadow.compare, reply.outputs, answer.outputs)
        self.stats.record_shadow(
            endpoint,
            shadow.model,
            version,
            compared=result.rows,
            agreed=result.agreed,
            latency_delta_s=shadow_s - primary_s,
        )

    async def drain(self) -> None:
        """Wait until no shadow is reserved or running (tests; shutdown). The primaries of
        reserved shadows must finish for this to return."""
        if self._reserved == 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        await waiter


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
