"""The shadow helper process (started by :class:`~modelyard.traffic.shadow_process.ProcessShadows`).

``python -m modelyard.traffic.shadow_worker FD``: FD is its end of a socketpair. The first
message is the serving process's (settings, sys.path); then each message is a shadow job. The
helper lowers its own CPU priority to ``SCHED_IDLE`` (``nice 19`` where that is refused), builds
a serving core of its own from the same settings (no preloads, no features: it loads the shadow
versions on first use), runs each job concurrently, compares with the primary's output, and
answers with a :class:`~modelyard.traffic.shadow_process.ResultMessage`. It exits when the
serving process closes the socket (or dies).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import socket
import sys

from modelyard.core.clock import Clock
from modelyard.core.observer import InferEvent, Observer
from modelyard.core.serving import ServingDataPlane
from modelyard.errors import ModelYardError
from modelyard.settings import Settings
from modelyard.traffic.shadow import compare_outputs
from modelyard.traffic.shadow_log import ShadowErrorLog
from modelyard.traffic.shadow_process import (
    GATHER_MAX,
    GATHER_S,
    HEADER,
    JobMessage,
    ResultMessage,
    frame,
)
from modelyard.traffic.stats import SHADOW_ROUTE
from modelyard.types import RequestContext

log = logging.getLogger("modelyard.shadow")


def lower_priority() -> str:
    """Run only on CPU time nobody else wants; returns what was set."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(19)
        return "nice 19"
    except OSError:
        return "unchanged"


class _LastEvent(Observer):
    """Keeps the serving core's event of each shadow (its version and code, as the core saw
    them) until the job picks it up."""

    def __init__(self) -> None:
        self.events: dict[str, InferEvent] = {}

    def on_infer(self, event: InferEvent) -> None:
        self.events[event.ctx.request_id] = event


async def _read(reader: asyncio.StreamReader) -> object:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    return pickle.loads(await reader.readexactly(size))


async def serve(sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    hello = await _read(reader)
    assert isinstance(hello, tuple)
    settings, paths = hello
    assert isinstance(settings, Settings)
    sys.path.extend(p for p in paths if p not in sys.path)
    from modelyard.app import build_app

    app = build_app(settings.model_copy(update={"preload": (), "demo": False}), features=False)
    events = _LastEvent()
    app.observers.add(events)
    results = _Results(writer)
    errors = ShadowErrorLog(log, app.clock)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                message = await _read(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if isinstance(message, tuple):
                job = JobMessage._make(message)
                task = asyncio.create_task(
                    _run(app.serving, events, job, results, app.clock, errors)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
    finally:
        for task in tasks:
            task.cancel()
        app.close()


class _Results:
    """Results finished within ``GATHER_S`` go back in one message."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: list[tuple[object, ...]] = []

    def add(self, result: ResultMessage) -> None:
        self.waiting.append(tuple(result))
        if len(self.waiting) >= GATHER_MAX:
            self.flush()
        elif len(self.waiting) == 1:
            asyncio.get_running_loop().call_later(GATHER_S, self.flush)

    def flush(self) -> None:
        if self.waiting and not self.writer.is_closing():
            self.writer.write(frame(self.waiting))
        self.waiting = []


async def _run(
    serving: ServingDataPlane,
    events: _LastEvent,
    job: JobMessage,
    results: _Results,
    clock: Clock,
    errors: ShadowErrorLog,
) -> None:
    ctx = RequestContext(
        request_id=job.request_id,
        deadline=None if job.timeout_s is None else clock.monotonic() + job.timeout_s,
        endpoint=job.endpoint,
        route=SHADOW_ROUTE,
    )
    started = clock.monotonic()
    rows = agreed = 0
    failure: str | None = None
    try:
        answer = await serving.infer(job.model, job.ref, job.infer_request(), ctx)
        primary = job.primary_outputs()
        if primary is not None:
            compared = compare_outputs(job.compare_spec(), primary, answer.outputs)
            rows, agreed = compared.rows, compared.agreed
    except ModelYardError as exc:
        failure = exc.message  # counted: the code comes from the serving core's event
    except Exception:
        log.exception("shadow of %s failed", job.model)  # a bug here, not the shadow's
    event = events.events.pop(ctx.request_id, None)
    if failure is not None:
        version = event.version if event is not None and event.version else job.ref or "?"
        errors.failed(f"{job.model}@{version}", job.endpoint, failure)
    result = ResultMessage(
        job_id=job.job_id,
        version=event.version if event is not None else "",
        code=event.code if event is not None else "INTERNAL",
        latency_s=event.latency_s if event is not None else clock.monotonic() - started,
        rows=rows,
        agreed=agreed,
    )
    results.add(result)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m modelyard.traffic.shadow_worker FD", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="shadow-helper %(levelname)s %(message)s")
    lower_priority()
    sock = socket.socket(fileno=int(argv[1]))
    try:
        asyncio.run(serve(sock))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
