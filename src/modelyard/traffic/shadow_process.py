"""Shadows in a helper process at idle CPU priority (``shadow_isolation: process``, the default).

A shadow doubles the work of the requests it copies. Run in the serving process, that work
shares the event loop and the GIL with the primaries, and a primary that arrives while a
shadow runs waits for it: primary tail latency grows with the shadow traffic. Here the serving
process only pickles the request and the primary's compared output onto a socket (tens of
microseconds); a helper process (:mod:`modelyard.traffic.shadow_worker`) runs the shadow
version on its own serving core, compares, and sends back a small result. The helper runs
under ``SCHED_IDLE`` (``nice 19`` where that is not allowed), so the kernel gives it only CPU
time that the serving process leaves idle, and preempts it the moment a primary needs a CPU.
When the helper falls behind, shadows pile up to the runner's ``max_concurrency`` and further
ones are dropped and counted, never queued.

The helper is started on the first shadow, and started again (after ``restart_backoff_s``) if
it dies; shadows in flight when it died are counted as dropped. Its results are recorded here:
the shadow's request and error counts go to the observers (route ``shadow``), the comparison to
the stats collector (:func:`~modelyard.traffic.shadow.record_outcome`).

Wire format, both ways: a 4-byte big-endian length, then a pickle: the first message is
(settings, sys.path), then one plain tuple per job (:class:`JobMessage`'s fields); the helper
answers with lists of result tuples (:class:`ResultMessage`'s fields), one list per burst of
finished jobs. Both sides gather what they send for up to :data:`GATHER_S` (10 ms), so a
busy server pays one wake-up per batch of shadows, not one per shadow. The socket is a private
socketpair between this process and the child it started, so both ends are trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import InferEvent, Observer
from modelyard.settings import Settings
from modelyard.traffic.shadow import Comparison, ShadowJob, record_outcome, shadow_label
from modelyard.traffic.spec import Compare
from modelyard.traffic.stats import SHADOW_ROUTE, StatsCollector, version_number
from modelyard.types import Array, InferRequest

log = logging.getLogger("modelyard.shadow")

HEADER = struct.Struct(">I")
#: A shadow is dropped instead of sent while this many bytes wait to be written to the helper.
DEFAULT_MAX_BUFFER_BYTES = 8 << 20
DEFAULT_RESTART_BACKOFF_S = 5.0
#: Jobs (and, in the helper, results) are gathered for this long, or up to GATHER_MAX, and
#: sent in one write: one wake-up of the other side per batch instead of per shadow. Shadows
#: start that much later; nobody waits for them.
GATHER_S = 0.01
GATHER_MAX = 64


def frame(obj: object) -> bytes:
    """One message: length header + pickle."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


class FrameBuffer:
    """Splits a byte stream into messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buf += data
        out: list[Any] = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            out.append(pickle.loads(bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return out


Packed = dict[str, Any]
"""Named tensors as sent: numeric ones as (dtype, shape, raw bytes), others (BYTES) as is."""


def pack(tensors: dict[str, Array]) -> Packed:
    """Numeric arrays as raw bytes: pickling ndarrays costs ~10 us each, this ~1 us."""
    return {
        name: a if a.dtype.kind == "O" else (a.dtype.str, a.shape, a.tobytes())
        for name, a in tensors.items()
    }


def unpack(packed: Packed) -> dict[str, Array]:
    out: dict[str, Array] = {}
    for name, value in packed.items():
        if isinstance(value, tuple):
            dtype, shape, raw = value
            out[name] = np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
        else:
            out[name] = value
    return out


class JobMessage(NamedTuple):
    """What the helper needs to run one shadow and compare it (parent -> helper). Plain
    values only (a named tuple of builtins and arrays pickles several times faster than
    dataclasses or pydantic models, and this is paid on the serving process's event loop)."""

    job_id: int
    model: str
    ref: str | None
    inputs: Packed
    parameters: dict[str, Any]
    outputs: list[str] | None
    compare: tuple[str | None, str, float, float]  # output, kind, atol, rtol
    primary: Packed | None  # the primary's compared output; None: the primary failed
    timeout_s: float | None
    request_id: str
    endpoint: str

    def infer_request(self) -> InferRequest:
        return InferRequest(
            inputs=unpack(self.inputs), parameters=self.parameters, outputs=self.outputs
        )

    def primary_outputs(self) -> dict[str, Array] | None:
        return None if self.primary is None else unpack(self.primary)

    def compare_spec(self) -> Compare:
        output, kind, atol, rtol = self.compare
        return Compare.model_construct(output=output, kind=kind, atol=atol, rtol=rtol)


class ResultMessage(NamedTuple):
    """One shadow's outcome (helper -> parent); ``rows``/``agreed`` only when ``code`` is OK
    and the primary had an answer."""

    job_id: int
    version: str
    code: str
    latency_s: float
    rows: int
    agreed: int


def compared_output(job: ShadowJob) -> Packed | None:
    """The one primary output the comparison looks at (all of them cost more to send)."""
    if job.primary is None:
        return None
    outputs = job.primary.outputs
    name = job.shadow.compare.output if job.shadow.compare.output is not None else None
    if name is None:
        name = next(iter(outputs), None)
    return {} if name is None or name not in outputs else pack({name: outputs[name]})


class _Channel(asyncio.Protocol):
    """The parent's end of the socket to one helper."""

    def __init__(self, owner: ProcessShadows, hello: bytes) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.waiting: list[bytes] = [hello]  # written once connected
        self.frames = FrameBuffer()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport = self.transport
        transport.writelines(self.waiting)
        self.waiting = []

    def send(self, data: bytes) -> None:
        """Queue ``data``: it goes out with everything queued within :data:`GATHER_S`."""
        self.waiting.append(data)
        if self.transport is None:
            return
        if len(self.waiting) >= GATHER_MAX:
            self._flush()
        elif len(self.waiting) == 1:
            asyncio.get_running_loop().call_later(GATHER_S, self._flush)

    def _flush(self) -> None:
        if self.transport is not None and self.waiting and not self.closed:
            self.transport.write(b"".join(self.waiting))
            self.waiting = []

    def buffered(self) -> int:
        queued = sum(len(d) for d in self.waiting)
        return queued if self.transport is None else queued + self.transport.get_write_buffer_size()

    def data_received(self, data: bytes) -> None:
        for message in self.frames.feed(data):
            if isinstance(message, list):  # the helper sends its results in batches
                for result in message:
                    self.owner.on_result(ResultMessage._make(result))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.owner.on_lost(self)


@dataclass(slots=True)
class _Pending:
    job: ShadowJob
    done: Callable[[int], None]


class ProcessShadows:
    """The :class:`~modelyard.traffic.shadow.ShadowExecutor` that runs shadows in a helper
    process (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        stats: StatsCollector,
        observer: Observer,
        *,
        clock: Clock = SYSTEM_CLOCK,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        restart_backoff_s: float = DEFAULT_RESTART_BACKOFF_S,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.observer = observer
        self.max_buffer_bytes = max_buffer_bytes
        self.restart_backoff_s = restart_backoff_s
        self._clock = clock
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._channel: _Channel | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._retry_at = float("-inf")
        self._connecting: asyncio.Task[None] | None = None
        self._exiting: list[subprocess.Popen[bytes]] = []
        #: Helper processes started (1 + restarts).
        self.starts = 0

    # ---- submitting --------------------------------------------------------------------------
    def submit(self, job: ShadowJob, done: Callable[[int], None]) -> bool:
        channel = self._ensure_channel()
        if channel is None or channel.buffered() > self.max_buffer_bytes:
            return False
        job_id = next(self._ids)
        deadline = job.ctx.deadline
        compare = job.shadow.compare
        message = JobMessage(
            job_id=job_id,
            model=job.shadow.model,
            ref=None if job.shadow.version is None else str(job.shadow.version),
            inputs=pack(job.request.inputs),
            parameters=job.request.parameters,
            outputs=job.request.outputs,
            compare=(compare.output, compare.kind, compare.atol, compare.rtol),
            primary=compared_output(job),
            timeout_s=None if deadline is None else max(deadline - self._clock.monotonic(), 0),
            request_id=job.ctx.request_id,
            endpoint=job.endpoint,
        )
        try:
            data = frame(tuple(message))  # a plain tuple pickles 3x faster than a NamedTuple
        except Exception as exc:  # e.g. an object tensor holding something unpicklable
            log.warning("shadow of endpoint %s not sent: %s", job.endpoint, exc)
            return False
        self._pending[job_id] = _Pending(job, done)
        channel.send(data)
        return True

    def _ensure_channel(self) -> _Channel | None:
        if self._channel is not None and not self._channel.closed:
            return self._channel
        if self._clock.monotonic() < self._retry_at:
            return None
        self._retry_at = self._clock.monotonic() + self.restart_backoff_s
        try:
            self._channel = self._start()
        except Exception:
            log.exception("could not start the shadow helper process")
            self._channel = None
        return self._channel

    def _start(self) -> _Channel:
        self._exiting = [c for c in self._exiting if c.poll() is None]
        ours, theirs = socket.socketpair()
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "modelyard.traffic.shadow_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                cwd=os.getcwd(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.starts += 1
        ours.setblocking(False)
        channel = _Channel(self, frame((self.settings, list(sys.path))))
        self._connecting = asyncio.get_running_loop().create_task(self._connect(channel, ours))
        log.info("shadow helper process started (pid %s)", self._child.pid)
        return channel

    async def _connect(self, channel: _Channel, sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: channel, sock=sock)
        except OSError as exc:
            log.warning("could not talk to the shadow helper process: %s", exc)
            sock.close()
            channel.connection_lost(exc)

    # ---- results -----------------------------------------------------------------------------
    def on_result(self, message: ResultMessage) -> None:
        pending = self._pending.pop(message.job_id, None)
        if pending is None:
            return
        job = pending.job
        ran_on = version_number(message.version)
        try:
            self.observer.on_infer(
                InferEvent(
                    endpoint=job.endpoint,
                    model=job.shadow.model,
                    version=message.version,
                    route=SHADOW_ROUTE,
                    code=message.code,
                    latency_s=message.latency_s,
                    request=job.request,
                    response=None,
                    ctx=job.ctx,
                )
            )
            version = ran_on or job.version
            if message.code == "OK":
                compared = None if job.primary is None else Comparison(message.rows, message.agreed)
                record_outcome(self.stats, self.observer, job, version, compared, message.latency_s)
            else:
                label = shadow_label(job.shadow.model, version)
                self.observer.on_shadow(job.endpoint, label, "error")
        finally:
            pending.done(ran_on)

    def on_lost(self, channel: _Channel) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        child, self._child = self._child, None
        code = None if child is None else child.poll()
        if child is not None and code is None:
            self._exiting.append(child)  # reaped later: never wait on the event loop
        if self._pending:
            log.warning(
                "shadow helper process exited (code %s); %d shadows in flight dropped",
                code,
                len(self._pending),
            )
        pending, self._pending = self._pending, {}
        for item in pending.values():
            job = item.job
            self.stats.record_shadow_drop(job.endpoint, job.shadow.model, job.version)
            self.observer.on_shadow(
                job.endpoint, shadow_label(job.shadow.model, job.version), "dropped"
            )
            item.done(0)

    @property
    def pid(self) -> int | None:
        """The helper's process id while it runs."""
        if self._child is None or self._child.poll() is not None:
            return None
        return self._child.pid

    def close(self) -> None:
        """Stop the helper (shadows still in flight are lost)."""
        channel, self._channel = self._channel, None
        if channel is not None and channel.transport is not None:
            with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                channel.transport.close()
        children = [*self._exiting, *([self._child] if self._child is not None else [])]
        self._child, self._exiting = None, []
        for child in children:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
