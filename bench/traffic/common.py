"""Shared parts of the traffic benchmarks: a pinned server, an open-loop load generator, and the
"Traffic" section of BENCHMARKS.md.

Open loop: requests are *scheduled* at a fixed rate and each one's latency is measured from its
scheduled time, so a slow answer cannot slow the generator down and hide itself (no coordinated
omission, unlike a closed loop such as wrk). Every request gets its own keep-alive connection
from a pool that grows as needed.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
for entry in (str(ROOT / "src"), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from modelyard.bench.httpclient import (  # noqa: E402
    build_request,
    connector,
    parse_target,
    read_response,
)
from modelyard.bench.report import append_under_heading  # noqa: E402
from modelyard.bench.stats import percentile  # noqa: E402

SECTION = "## Traffic"
PREAMBLE = "# Benchmarks\n\n" + SECTION + "\n"
SERVER_CPU = 0
CLIENT_CPU = 1


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM: the server drains and writes its last serving stats."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


PIN = True  # benchmarks' --no-pin turns it off: on a busy shared machine a pinned process
# cannot escape other work on its core, while the scheduler can move an unpinned one


def serve(registry: Path, log: Path, preload: str, env: dict[str, str]) -> Server:
    """``python -m modelyard serve`` (pinned to the server core), once it reports ready."""
    pin = ["taskset", "-c", str(SERVER_CPU)] if PIN else []
    cmd = [*pin, sys.executable, "-m", "modelyard", "serve"]
    cmd += ["--registry", str(registry), "--http-port", "0", "--grpc-port", "-1"]
    cmd += ["--preload", preload]
    full = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stderr=out, stdout=subprocess.DEVNULL, env=full)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        port = re.search(r"modelyard listening http=(\d+)", text)
        if port and "modelyard ready" in text:
            return Server(proc, int(port.group(1)), log)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not become ready:\n{log.read_text(errors='replace')}")


@dataclass
class Run:
    """One open-loop run against one endpoint."""

    endpoint: str
    rate: float
    duration_s: float
    latencies_s: list[float]
    errors: int
    server_cpu: float = math.nan  # share of one core the server used during the run
    slice_p99s: list[float] = field(default_factory=list)  # p99 of each slice (interleaved)

    def q(self, pct: float) -> float:
        return percentile(self.latencies_s, pct) if self.latencies_s else math.nan

    def typical_p99(self) -> float:
        """Median over the slices of each slice's p99: robust to a few slices that other work
        on a shared machine stalled (the pooled p99 is not)."""
        values = sorted(v for v in self.slice_p99s if not math.isnan(v))
        return percentile(values, 50, presorted=True) if values else math.nan

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + self.errors


async def _open_loop(
    url: str, endpoint: str, body: bytes, rate: float, duration_s: float, timeout_s: float
) -> Run:
    target = parse_target(url, endpoint)
    request = build_request(target, body)
    open_conn = connector(target)
    idle: list[Any] = []
    latencies: list[float] = []
    errors = 0
    now = time.perf_counter  # uvloop's loop.time() has millisecond resolution: too coarse

    async def one(scheduled: float) -> None:
        nonlocal errors
        conn = idle.pop() if idle else None
        try:
            async with asyncio.timeout(timeout_s):
                if conn is None:
                    conn = await open_conn()
                reader, writer = conn
                writer.write(request)
                await writer.drain()
                resp = await read_response(reader)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            if conn is not None:
                conn[1].close()
            return
        if 200 <= resp.status < 300:
            latencies.append(now() - scheduled)
        else:
            errors += 1
        if resp.keep_alive:
            idle.append(conn)
        else:
            conn[1].close()

    start = now() + 0.05
    tasks = []
    for i in range(int(rate * duration_s)):
        scheduled = start + i / rate
        wait = scheduled - now()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return Run(endpoint, rate, duration_s, latencies, errors)


def open_loop(
    url: str, endpoint: str, body: bytes, rate: float, duration_s: float, timeout_s: float = 30.0
) -> Run:
    """Send ``rate`` requests/s for ``duration_s`` to ``endpoint``; latency from schedule."""
    try:
        import uvloop

        return uvloop.run(_open_loop(url, endpoint, body, rate, duration_s, timeout_s))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(_open_loop(url, endpoint, body, rate, duration_s, timeout_s))


def pin_client() -> None:
    """This process (the load generator) runs on the client core, the server on its own."""
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})


def machine_line() -> str:
    from bench.record import loadavg, machine

    m = machine()
    return (
        f"{m['cpu']}, `nproc` = {m['nproc']}, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}; load average {loadavg()}"
    )


def record(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Append ``text`` at the end of the "Traffic" section of BENCHMARKS.md."""
    old = path.read_text() if path.exists() else ""
    if SECTION not in old:  # a new section goes at the end; the others stay where they are
        old = (old.rstrip("\n") + "\n\n" if old.strip() else "# Benchmarks\n\n") + SECTION + "\n"
    path.write_text(append_under_heading(old, SECTION, text, preamble=PREAMBLE))


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1e3:.2f}"


def interleaved(
    server: Server,
    endpoints: tuple[str, ...],
    body: bytes,
    rate: float,
    *,
    slices: int,
    slice_s: float,
) -> dict[str, Run]:
    """Alternate short open-loop slices between ``endpoints`` (ABBA order) and pool each
    endpoint's latencies: on a shared machine, background load then hits every endpoint alike
    instead of whichever run it happens to land on."""
    pooled = {ep: Run(ep, rate, 0.0, [], 0, 0.0) for ep in endpoints}
    for i in range(slices):
        order = endpoints if i % 2 == 0 else endpoints[::-1]
        for ep in order:
            cpu0, t0 = server.cpu_s(), time.monotonic()
            run = open_loop(server.url, ep, body, rate, slice_s)
            elapsed = time.monotonic() - t0
            total = pooled[ep]
            total.latencies_s.extend(run.latencies_s)
            total.slice_p99s.append(run.q(99))
            total.errors += run.errors
            total.server_cpu += server.cpu_s() - cpu0
            total.duration_s += elapsed
    for total in pooled.values():
        total.server_cpu /= total.duration_s  # share of one core over the endpoint's slices
    return pooled


def placement() -> str:
    """How the server and the generator were placed on the cores, for the record."""
    if PIN:
        return (
            f"server `taskset -c {SERVER_CPU} python -m modelyard serve` (one process), "
            f"open-loop generator pinned to core {CLIENT_CPU}"
        )
    return (
        "server `python -m modelyard serve` (one process) and the open-loop generator not "
        "pinned (`--no-pin`: on a busy shared machine the scheduler can move them away from "
        "other work)"
    )
