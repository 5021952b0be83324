"""Metrics overhead: ModelYard's req/s with Prometheus metrics + access logs on vs. both off.

Two ``modelyard serve`` processes on the same model (bench/models.py's logreg ONNX), both pinned
to the server core; ``wrk`` pinned to the client core drives one at a time, alternating on/off
runs so that drift of a shared machine hits both alike. While the "on" server is measured,
/metrics is scraped every second, as Prometheus would. Medians of the runs go into the
"Metrics overhead" section of BENCHMARKS.md (other sections stay as they are).

    .venv/bin/python bench/overhead.py                 # 3 x 10 s each, records the result
    .venv/bin/python bench/overhead.py --quick         # 1 x 3 s each, records nothing
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench.*` importable
    sys.path.insert(0, str(ROOT))

from bench.harness import Context  # noqa: E402
from bench.models import build_onnx, v2_request  # noqa: E402
from bench.record import loadavg, machine, tool_version  # noqa: E402
from bench.systems import ModelYard  # noqa: E402
from modelyard.bench.stats import RunStats  # noqa: E402
from modelyard.bench.wrk import lua_script, parse_wrk_output  # noqa: E402

HEADING = "## Metrics overhead (newest last)"
SECTION = f"""{HEADING}

What observability costs: `bench/overhead.py` serves the peer comparison's logreg model from two
`modelyard serve` processes that differ only in `MODELYARD_METRICS` / `MODELYARD_ACCESS_LOG_SAMPLE`
(on: Prometheus metrics with /metrics scraped every second, and a JSON access-log line per request
written to the server's log file; off: `metrics=false`, `access_log_sample=0`). Tracing is off in
both. Servers on core 0, `wrk -t1 -c64` on core 1, alternating on/off runs, medians. Goal: on
>= 90 % of off. Besides req/s, each run records the server process's CPU time per request
(`/proc/<pid>/stat`): on a shared or virtual machine it is steadier than req/s, and off/on of it
is the req/s ratio a dedicated core would give.
"""


class Server(ModelYard):
    """``modelyard serve`` with monitoring on or off (environment variables only)."""

    def __init__(self, ctx: Context, *, monitoring: bool) -> None:
        self.name = "modelyard-monitoring-" + ("on" if monitoring else "off")
        self.monitoring = monitoring
        super().__init__(ctx)

    def env(self) -> dict[str, str]:
        flags = {"MODELYARD_METRICS": "false", "MODELYARD_ACCESS_LOG_SAMPLE": "0"}
        if self.monitoring:
            flags = {"MODELYARD_METRICS": "true", "MODELYARD_ACCESS_LOG_SAMPLE": "1"}
        env = {**super().env(), **flags, "MODELYARD_TRACING": "false", "MODELYARD_WORKERS": "1"}
        # Keep the caller's PYTHONPATH too (e.g. dependencies unpacked outside a venv).
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (env.get("PYTHONPATH"), os.environ.get("PYTHONPATH")) if p
        )
        return env

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    stats: RunStats
    cpu_us_per_request: float


class Scraper:
    """GET /metrics once a second in a thread while a run lasts (what Prometheus does)."""

    def __init__(self, url: str) -> None:
        self.url = url + "/metrics"
        self.stop = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            with urllib.request.urlopen(self.url, timeout=5) as response:
                assert response.status == 200
                response.read()
            self.scrapes += 1

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def run_wrk(args: argparse.Namespace, url: str, script: Path, seconds: int) -> RunStats:
    cmd = ["taskset", "-c", args.client_cpus, "wrk", "-t1", f"-c{args.connections}"]
    cmd += [f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wrk exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return parse_wrk_output(done.stdout)


def one_run(args: argparse.Namespace, server: Server, script: Path) -> Run:
    cpu = server.cpu_seconds()
    if server.monitoring:
        with Scraper(server.url):
            stats = run_wrk(args, server.infer_url, script, args.duration)
    else:
        stats = run_wrk(args, server.infer_url, script, args.duration)
    cpu = server.cpu_seconds() - cpu
    return Run(stats, cpu / max(stats.requests, 1) * 1e6)


def measure(
    args: argparse.Namespace, on: Server, off: Server, script: Path
) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {on.name: [], off.name: []}
    for server in (on, off):
        run_wrk(args, server.infer_url, script, args.warmup)
    for i in range(args.runs):
        for server in (on, off) if i % 2 == 0 else (off, on):
            run = one_run(args, server, script)
            results[server.name].append(run)
            stats = run.stats
            print(
                f"[overhead] {server.name:24} run {i + 1}/{args.runs}: {stats.rps:>9,.0f} req/s "
                f"p50 {stats.p50_s * 1e3:7.2f} ms  p99 {stats.p99_s * 1e3:7.2f} ms  "
                f"cpu {run.cpu_us_per_request:6.1f} us/req  errors {stats.errors}",
                flush=True,
            )
    return results


def table(results: dict[str, list[Run]], off_name: str) -> tuple[str, float, float]:
    """The result table and the two headlines, each the median over runs of a pair measured
    back to back (robust to the machine drifting between runs): on/off req/s, and off/on
    server CPU per request."""
    on_name = next(name for name in results if name != off_name)
    pairs = list(zip(results[on_name], results[off_name], strict=True))
    rps_ratio = statistics.median(on.stats.rps / off.stats.rps for on, off in pairs)
    cpu_ratio = statistics.median(
        off.cpu_us_per_request / on.cpu_us_per_request for on, off in pairs
    )
    base = statistics.median(r.stats.rps for r in results[off_name])
    lines = [
        "| server | median req/s | p50 ms | p99 ms | errors | server CPU us/request |",
        "|:---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        rps = statistics.median(r.stats.rps for r in runs)
        p50 = statistics.median(r.stats.p50_s for r in runs) * 1e3
        p99 = statistics.median(r.stats.p99_s for r in runs) * 1e3
        cpu = statistics.median(r.cpu_us_per_request for r in runs)
        errors = sum(r.stats.errors for r in runs)
        lines.append(
            f"| {name} | {rps:,.0f} ({rps / base:.0%}) | {p50:.2f} | {p99:.2f} | {errors} "
            f"| {cpu:.1f} |"
        )
    return "\n".join(lines), rps_ratio, cpu_ratio


def record(path: Path, text: str) -> None:
    """Append ``text`` to the overhead section, creating it at the end of the file if needed."""
    from modelyard.bench.report import append_under_heading

    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if HEADING not in old:
        old = old.rstrip("\n") + "\n\n" + SECTION
    path.write_text(append_under_heading(old, HEADING, text, preamble=SECTION))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per run")
    p.add_argument("--warmup", type=int, default=3, help="seconds, discarded, per server")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--quick", action="store_true", help="1 x 3 s per server, record nothing")
    p.add_argument("--no-record", dest="record", action="store_false")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--onnx", type=Path, help="a prebuilt logreg.onnx (default: build it)")
    args = p.parse_args()
    if args.quick:
        args.runs, args.duration, args.warmup, args.record = 1, 3, 1, False
    return args


def main() -> None:
    args = parse_args()
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="modelyard-overhead-") as tmp:
        work = Path(tmp)
        body = __import__("orjson").dumps(v2_request())
        ctx = Context(
            workdir=work,
            logs=work / "logs",
            venvs=ROOT / "bench" / ".venvs",
            model="logreg",
            onnx_path=args.onnx or build_onnx("logreg", work / "models"),
            body=body,
            expected_response=b"",
            server_cpus=args.server_cpus,
        )
        script = work / "post.lua"
        script.write_text(lua_script(body))
        on, off = Server(ctx, monitoring=True), Server(ctx, monitoring=False)
        try:
            for server in (on, off):
                server.prepare()
                server.start()
            results = measure(args, on, off, script)
        finally:
            on.stop()
            off.stop()
    text, ratio, cpu_ratio = table(results, off.name)
    headline = (
        f"on = **{ratio:.1%}** of off in req/s and **{cpu_ratio:.1%}** in server CPU per "
        "request (medians of run pairs; goal >= 90 %)"
    )
    print(text)
    print(f"[overhead] {headline}")
    if args.record:
        m = machine()
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = "python bench/overhead.py" + (
            " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
        )
        record(
            args.output,
            f"### {when} — `{command}`\n\n"
            f"- Machine: {m['cpu']}, `nproc` = {m['nproc']}, {m['memory_gib']} GiB, "
            f"Linux {m['kernel']}, Python {m['python']}; {tool_version('wrk')}.\n"
            f"- Load average (1/5/15 min): {load_before} at start, {loadavg()} at end.\n"
            f"- {args.runs} x {args.duration} s runs per server, {args.connections} connections.\n"
            f"- Result: {headline}.\n\n{text}\n",
        )
        print(f"[overhead] recorded in {args.output}")


if __name__ == "__main__":
    main()
