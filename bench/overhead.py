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
>= 90 % of off.
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


def measure(
    args: argparse.Namespace, on: Server, off: Server, script: Path
) -> dict[str, list[RunStats]]:
    results: dict[str, list[RunStats]] = {on.name: [], off.name: []}
    for server in (on, off):
        run_wrk(args, server.infer_url, script, args.warmup)
    for i in range(args.runs):
        for server in (on, off) if i % 2 == 0 else (off, on):
            if server.monitoring:
                with Scraper(server.url):
                    stats = run_wrk(args, server.infer_url, script, args.duration)
            else:
                stats = run_wrk(args, server.infer_url, script, args.duration)
            results[server.name].append(stats)
            print(
                f"[overhead] {server.name:24} run {i + 1}/{args.runs}: {stats.rps:>9,.0f} req/s "
                f"p50 {stats.p50_s * 1e3:7.2f} ms  p99 {stats.p99_s * 1e3:7.2f} ms  "
                f"errors {stats.errors}",
                flush=True,
            )
    return results


def table(results: dict[str, list[RunStats]], off_name: str) -> tuple[str, float]:
    """The result table, and the headline: the median over runs of on/off req/s, each run's
    pair measured back to back (robust to the machine drifting between runs)."""
    base = statistics.median(s.rps for s in results[off_name])
    lines = [
        "| server | median req/s | p50 ms | p99 ms | errors | median req/s vs off |",
        "|:---|---:|---:|---:|---:|---:|",
    ]
    on_name = next(name for name in results if name != off_name)
    pairs = zip(results[on_name], results[off_name], strict=True)
    ratio = statistics.median(on.rps / off.rps for on, off in pairs)
    for name, runs in results.items():
        rps = statistics.median(s.rps for s in runs)
        p50 = statistics.median(s.p50_s for s in runs) * 1e3
        p99 = statistics.median(s.p99_s for s in runs) * 1e3
        errors = sum(s.errors for s in runs)
        lines.append(
            f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} | {rps / base:.1%} |"
        )
    return "\n".join(lines), ratio


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
    text, ratio = table(results, off.name)
    print(text)
    print(f"[overhead] monitoring on = {ratio:.1%} of off, median of run pairs (goal >= 90 %)")
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
            f"- {args.runs} x {args.duration} s runs per server, {args.connections} connections; "
            f"result: on = **{ratio:.1%}** of off (median of the on/off ratios of run pairs)."
            f"\n\n{text}\n",
        )
        print(f"[overhead] recorded in {args.output}")


if __name__ == "__main__":
    main()
