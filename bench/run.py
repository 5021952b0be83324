"""Benchmark ModelYard against its peers: ``make bench`` (= ``.venv/bin/python bench/run.py``).

Starts each system pinned to one core, drives it with ``wrk`` (POST V2 JSON, Lua script) pinned
to the other, repeats the headline point and prints a ratio table of median req/s, p50, p99 and
errors. Writes bench/results/latest.json, a latency-vs-throughput plot (latest.png) and, for full
runs, a dated section in BENCHMARKS.md. ``--quick`` is a short smoke run (~2 s per point).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import modelyard  # noqa: F401
except ImportError:  # not installed in the venv yet: use the source tree
    sys.path.insert(0, str(ROOT / "src"))

import models  # noqa: E402
import orjson  # noqa: E402
import plot  # noqa: E402
import record  # noqa: E402
import systems  # noqa: E402
import venvs  # noqa: E402
from harness import Context, Skip, StartError, System  # noqa: E402

from modelyard.bench.report import (  # noqa: E402
    PointResult,
    headers,
    markdown_table,
    ratio_rows,
    row_cells,
)
from modelyard.bench.stats import RunStats  # noqa: E402
from modelyard.bench.wrk import lua_script, parse_wrk_output  # noqa: E402
from modelyard.errors import ModelYardError  # noqa: E402

RESULTS = HERE / "results"
TOOLS = {"wrk": "wrk", "taskset": "util-linux", "nginx": "nginx"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run x 2 s per point")
    p.add_argument("--systems", default=",".join(systems.BY_NAME), help="comma-separated")
    p.add_argument("--model", default="logreg", choices=models.MODELS)
    p.add_argument("--connections", type=int, default=64, help="the headline point")
    p.add_argument("--sweep", default="1,8,256", help="extra connection counts, 1 run each")
    p.add_argument("--runs", type=int, default=None, help="runs of the headline point (3)")
    p.add_argument("--duration", type=int, default=None, help="seconds per run (10)")
    p.add_argument("--warmup", type=int, default=None, help="discarded seconds first (2)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="append to BENCHMARKS.md (default: yes, except with --quick)",
    )
    p.add_argument("--benchmarks-file", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-install", action="store_true", help="never apt-get missing tools")
    args = p.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (1 if quick else 3)
    args.duration = args.duration or (2 if quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.record = (not quick) if args.record is None else args.record
    args.sweep_points = [int(c) for c in args.sweep.split(",") if c.strip()]
    unknown = set(args.systems.split(",")) - set(systems.BY_NAME)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; known: {', '.join(systems.BY_NAME)}")
    return args


def ensure_tools(no_install: bool) -> None:
    """wrk, taskset and nginx from Debian; installed with apt-get when missing (as root)."""
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if no_install or os.geteuid() != 0:
        sys.exit(f"[bench] missing tools; install them: apt-get install {' '.join(missing)}")
    print(f"[bench] installing {' '.join(missing)} with apt-get")
    subprocess.run(["apt-get", "update", "-q"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True)


def expected_response(onnx_path: Path, model: str, body: bytes) -> bytes:
    """The model's real V2 answer to ``body`` (nginx serves it as its constant)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    req = orjson.loads(body)["inputs"][0]
    x = np.asarray(req["data"], dtype=np.float32).reshape(req["shape"])
    names = [o.name for o in sess.get_outputs()]
    kinds = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}
    outputs = [
        {"name": n, "datatype": kinds[r.dtype], "shape": list(r.shape), "data": r.ravel().tolist()}
        for n, r in zip(names, sess.run(names, {"input": x}), strict=True)
    ]
    return orjson.dumps({"model_name": model, "model_version": "1", "outputs": outputs})


def run_wrk(
    args: argparse.Namespace, system: System, script: Path, conns: int, secs: int
) -> RunStats:
    cmd = [
        "taskset",
        "-c",
        args.client_cpus,
        "wrk",
        f"-t{min(args.threads, conns)}",
        f"-c{conns}",
        f"-d{secs}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        system.infer_url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60, check=False)
    if done.returncode != 0:
        raise StartError(f"wrk exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return parse_wrk_output(done.stdout)


def measure(args: argparse.Namespace, system: System, script: Path) -> list[PointResult]:
    """Warm up, then the headline point (``runs`` times) and the sweep points (once each)."""
    name = system.name
    if args.warmup:
        run_wrk(args, system, script, args.connections, args.warmup)
    plan = [(args.connections, args.runs)] + [
        (c, 1) for c in args.sweep_points if c != args.connections
    ]
    out = []
    for conns, runs in plan:
        got = []
        for i in range(runs):
            stats = run_wrk(args, system, script, conns, args.duration)
            print(
                f"[bench] {name:24} c={conns:<4} run {i + 1}/{runs}: {stats.rps:>9,.0f} req/s "
                f"p50 {stats.p50_s * 1e3:8.2f} ms  p99 {stats.p99_s * 1e3:8.2f} ms  "
                f"errors {stats.errors}",
                flush=True,
            )
            got.append(stats)
        out.append(PointResult(name, conns, tuple(got)))
    return out


def run_system(
    args: argparse.Namespace,
    cls: type[System],
    ctx: Context,
    script: Path,
    versions: dict[str, dict[str, str]],
) -> list[PointResult]:
    system = cls(ctx)
    try:
        system.prepare()
        versions[system.name] = system.versions()
        print(f"[bench] starting {system.name} (pinned to cpu {ctx.server_cpus})", flush=True)
        system.start()
    except Skip as exc:
        print(f"[bench] skip {system.name}: {exc}", flush=True)
        return [PointResult(system.name, args.connections, note=str(exc))]
    except (StartError, ModelYardError, OSError, subprocess.SubprocessError) as exc:
        print(f"[bench] {system.name} did not start: {exc}", flush=True)
        return [PointResult(system.name, args.connections, note=f"failed to start: {_first(exc)}")]
    try:
        return measure(args, system, script)
    except (StartError, ModelYardError, subprocess.SubprocessError) as exc:
        print(f"[bench] {system.name} failed under load: {exc}", flush=True)
        return [PointResult(system.name, args.connections, note=f"failed: {_first(exc)}")]
    finally:
        system.stop()


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def print_table(points: list[PointResult], reference: str, title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    rows = ratio_rows(points, reference)
    table = Table(*headers(reference), title=title)
    for col in table.columns[1:]:
        col.justify = "right"
    for row in rows:
        table.add_row(*row_cells(row))
    console = Console(highlight=False)
    if not console.is_terminal:  # piped into a log: do not squeeze the names to 80 columns
        console = Console(highlight=False, width=max(console.width, 132))
    console.print(table)
    return markdown_table(rows, reference)


def make_context(args: argparse.Namespace, workdir: Path, logs: Path) -> Context:
    onnx_path = models.build_onnx(args.model, workdir / "models")
    body = orjson.dumps(models.v2_request())
    return Context(
        workdir=workdir,
        logs=logs,
        venvs=HERE / ".venvs",
        model=args.model,
        onnx_path=onnx_path,
        body=body,
        expected_response=expected_response(onnx_path, args.model, body),
        server_cpus=args.server_cpus,
    )


def pick_reference(headline: list[PointResult]) -> str:
    """ModelYard when it was measured, else the first system that was."""
    measured = [p.system for p in headline if p.runs]
    if systems.REFERENCE in measured:
        return systems.REFERENCE
    return measured[0] if measured else headline[0].system


def write_results(
    result: dict[str, object], points: list[PointResult], title: str, stamp: str, latest: bool
) -> None:
    """runs/<stamp>.json and .png always; latest.json and latest.png (the files BENCHMARKS.md
    points to) only for recorded runs, so a smoke run does not replace them."""
    runs_dir = RESULTS / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    json_path = runs_dir / f"{stamp}.json"
    json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    png = plot.plot(points, runs_dir / f"{stamp}.png", title)
    if latest:
        shutil.copy(json_path, RESULTS / "latest.json")
        if png is not None:
            shutil.copy(png, RESULTS / "latest.png")
    print(f"[bench] wrote {json_path}" + (f" and {png}" if png else ""))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_tools(args.no_install)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    load_before = record.loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    wrk = record.tool_version("wrk").split()[1] if shutil.which("wrk") else "-"
    versions: dict[str, dict[str, str]] = {"load generator": {"wrk": wrk}}
    points: list[PointResult] = []
    try:
        ctx = make_context(args, workdir, RESULTS / "logs" / stamp)
        script = workdir / "post.lua"
        script.write_text(lua_script(ctx.body))
        for name in args.systems.split(","):
            points += run_system(args, systems.BY_NAME[name], ctx, script, versions)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = record.loadavg()
    headline = [p for p in points if p.connections == args.connections]
    reference = pick_reference(headline)
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    title = (
        f"{args.model}: {args.connections} connections, median of {args.runs} x "
        f"{args.duration} s; load {load_before} -> {load_after}"
    )
    table = print_table(headline, reference, title)
    info = {
        "started": started.isoformat(timespec="seconds"),
        "command": command.strip(),
        "machine": record.machine(),
        "load_before": load_before,
        "load_after": load_after,
        "model": args.model,
        "connections": args.connections,
        "runs": args.runs,
        "duration_s": args.duration,
        "threads": args.threads,
        "reference": reference,
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
    }
    result = {**info, "versions": versions, "points": [p.as_dict() for p in points]}
    write_results(result, points, title, stamp, latest=args.record)
    if args.record:
        text = record.section(
            when=started.strftime("%Y-%m-%d %H:%M UTC"),
            command=command.strip(),
            table=table,
            info=info,
            versions=versions,
            notes=[
                f"{e.name}: {e.why}"
                for e in venvs.ENVS.values()
                if e.why and any(e.name in system for system in versions)
            ],
        )
        record.append(args.benchmarks_file, text)
        print(f"[bench] added the table to {args.benchmarks_file}")
    return 0 if any(p.runs and not math.isnan(p.median_rps) for p in headline) else 1


if __name__ == "__main__":
    sys.exit(main())
