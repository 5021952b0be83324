"""Many models on one box, side by side: A (weights from S3 on every request), B (ModelYard, RAM
budget 25 % of the model bytes), C (ModelYard, everything preloaded). See README.md.

    .venv/bin/python bench/many_models/run.py            # 200 models, 20 s per mode, records
    .venv/bin/python bench/many_models/run.py --quick    # 40 models, 5 s per mode, no record

B runs once per eviction policy in ``--policies`` (default: gdsf, then lru for comparison);
the first is the "B" the goals are checked on, the others are labelled ``B-<policy>``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import orjson  # noqa: E402
from load import run_wrk, zipf_script  # noqa: E402
from models import ModelSpec, build, fleet, zipf_weights  # noqa: E402
from procs import (  # noqa: E402
    cpu_seconds,
    free_port,
    get_json,
    loadavg,
    machine,
    post,
    process,
    rss_bytes,
    thread_cpu_seconds,
    thread_names,
    wait_ready,
)
from report import ModeResult, cache_delta, goals, record, static_ceiling, table  # noqa: E402

from modelyard.bench.stats import RunStats  # noqa: E402
from modelyard.registry import Registry  # noqa: E402

KEY, SECRET, BUCKET = "bench-key", "bench-secret", "fleet"
# botocore >= 1.36 checksums requests and responses in ways rclone's S3 server does not support.
CHECKSUM_ENV = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="40 models, 5 s runs, no record")
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per mode")
    p.add_argument("--warmup", type=float, default=8.0, help="discarded seconds per mode")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--budget", type=float, default=0.25, help="B's RAM budget / model bytes")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--workdir", type=Path, default=None, help="default: a fresh temp dir")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--policies", default="gdsf,lru", help="B's cache policies (first = the goals' B)"
    )
    p.add_argument("--no-naive", action="store_true", help="skip A (no goals vs A, no record)")
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the ModelYard servers (B and C); repeatable; no record",
    )
    p.add_argument(
        "--py-spy", action="store_true", help="profile B's servers (py-spy, logs/B-*.txt)"
    )
    args = p.parse_args(argv)
    args.policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    if args.no_naive or args.py_spy or args.server_env:
        args.record = False
    if args.quick:
        args.models, args.duration, args.warmup = 40, 5.0, 3.0
    if args.record is None:
        args.record = not args.quick
    return args


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.s3_port = free_port()
        self.s3_url = f"http://127.0.0.1:{self.s3_port}"
        self.artifacts = f"s3://{BUCKET}/models"
        self.registry = work / "registry"
        self.specs: list[ModelSpec] = fleet(args.models, args.seed)
        self.script = work / "zipf.lua"
        self.disk_bytes: dict[str, int] = {}

    def s3_env(self) -> dict[str, str]:
        return {
            **CHECKSUM_ENV,
            "MODELYARD_ARTIFACTS": self.artifacts,
            "MODELYARD_S3_ENDPOINT_URL": self.s3_url,
            "MODELYARD_S3_KEY": KEY,
            "MODELYARD_S3_SECRET": SECRET,
            "PYTHONPATH": str(ROOT / "src"),
        }

    def s3_server(self) -> Any:
        data = self.work / "s3"
        (data / BUCKET).mkdir(parents=True, exist_ok=True)
        rclone = shutil.which("rclone") or str(Path(sys.executable).parent / "rclone")
        cmd = [rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.s3_port}"]
        cmd += ["--auth-key", f"{KEY},{SECRET}", str(data)]
        return process(cmd, cpus=self.args.client_cpus, log=self.logs / "s3.log")

    def push_fleet(self) -> None:
        os.environ.update(CHECKSUM_ENV)
        options = {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": self.s3_url}}
        staging = self.work / "staging"
        staging.mkdir(exist_ok=True)
        with Registry(self.registry, artifacts=self.artifacts, storage_options=options) as reg:
            for spec in self.specs:
                obj, sample = build(spec, staging)
                mv = reg.push(obj, name=spec.name, sample=sample, metadata={"kind": spec.kind})
                self.disk_bytes[spec.name] = mv.manifest.total_bytes()
        shutil.rmtree(staging, ignore_errors=True)
        script = zipf_script(self.specs, self.args.zipf, self.args.seed)
        self.script.write_text(script)

    def measure(self, url: str, timeout_s: float) -> Any:
        a = self.args
        run = self.logs / "wrk.log"

        def go(seconds: float) -> RunStats:
            return run_wrk(
                url,
                self.script,
                duration_s=seconds,
                connections=a.connections,
                timeout_s=timeout_s,
                cpus=a.client_cpus,
                log=run,
            )

        if a.warmup > 0:
            go(a.warmup)
        return lambda: go(a.duration)

    def modelyard(
        self, mode: str, what: str, cache_bytes: int, preload: bool, policy: str = "gdsf"
    ) -> ModeResult:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **self.s3_env(),
            "MODELYARD_CACHE_BYTES": str(cache_bytes),
            "MODELYARD_LOCAL_CACHE_DIR": str(self.work / "disk"),
            "MODELYARD_LOG_LEVEL": "warning",
            "MODELYARD_CACHE_POLICY": policy,
            **dict(kv.split("=", 1) for kv in self.args.server_env),
        }
        if preload:
            env["MODELYARD_PRELOAD"] = ",".join(s.name for s in self.specs)
        cmd = [sys.executable, "-m", "modelyard", "serve", "--registry", str(self.registry)]
        cmd += ["--http-port", str(port), "--grpc-port", "-1"]
        log = self.logs / f"{mode}.log"
        with process(cmd, cpus=self.args.server_cpus, log=log, env=env) as proc:
            ready_s = wait_ready(proc, f"{base}/v2/health/ready", 900, log)
            self._check(base)
            measured = self.measure(base, timeout_s=10)
            before = get_json(f"{base}/v2/fleet/cache")
            cpu0 = cpu_seconds(proc.pid)
            with self.profiled(mode, proc.pid):
                stats = measured()
            cpu = cpu_seconds(proc.pid) - cpu0
            after = get_json(f"{base}/v2/fleet/cache")
            rss = rss_bytes(proc.pid)
        delta = cache_delta(before, after, stats.duration_s)
        sizes = {e["model"]: e["bytes"] for e in after["entries"]}
        extra = {
            "ready_s": ready_s,
            "bytes_in_use": after["bytes_in_use"],
            "sizes": sizes,
            "budget_bytes": cache_bytes,
            "policy": policy,
            "cpu_s": cpu,
            "load_s": after["stats"]["load_seconds_total"] - before["stats"]["load_seconds_total"],
            "disk": after["disk"],
        }
        return ModeResult(
            mode,
            what,
            stats,
            delta["hit_ratio"],
            delta["loads_per_s"],
            delta["evictions_per_s"],
            rss / 2**20,
            extra,
        )

    @contextlib.contextmanager
    def profiled(self, mode: str, pid: int) -> Iterator[None]:
        """With ``--py-spy``, samples the server during the measured run (logs/<mode>-py-spy.txt,
        py-spy's raw format: one folded stack and its count per line) and prints its CPU
        seconds by thread (event loop, inference threads, model cache loaders, ...)."""
        if not self.args.py_spy:
            yield
            return
        py_spy = str(Path(sys.executable).parent / "py-spy")
        out = self.logs / f"{mode}-py-spy.txt"
        before = thread_cpu_seconds(pid)
        cmd = [py_spy, "record", "--pid", str(pid), "-f", "raw", "-r", "100", "-o", str(out)]
        cmd += ["--duration", str(int(self.args.duration)), "--nonblocking"]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            spy.wait(60)
        after, names = thread_cpu_seconds(pid), thread_names(pid, py_spy)
        groups: dict[str, float] = {}
        for tid, cpu in after.items():
            group = re.sub(r"_\d+$", "", names.get(tid, "native (no Python frame)"))
            groups[group] = groups.get(group, 0.0) + cpu - before.get(tid, 0.0)
        split = ", ".join(f"{g} {s:.2f}" for g, s in sorted(groups.items(), key=lambda x: -x[1]))
        print(f"{mode}: CPU seconds by thread: {split}", flush=True)
        print(f"{mode}: py-spy profile in {out}", flush=True)

    def naive(self) -> ModeResult:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, str(HERE / "naive_app.py"), "--registry", str(self.registry)]
        cmd += ["--artifacts", self.artifacts, "--port", str(port)]
        log = self.logs / "A.log"
        with process(cmd, cpus=self.args.server_cpus, log=log, env=self.s3_env()) as proc:
            wait_ready(proc, f"{base}/v2/health/ready", 120, log)
            self._check(base)
            stats = self.measure(base, timeout_s=60)()
            rss = rss_bytes(proc.pid)
        return ModeResult(
            "A", "S3 fetch + load on every request", stats, 0.0, stats.rps, 0.0, rss / 2**20
        )

    def _check(self, base: str) -> None:
        for spec in self.specs[:3]:
            status = post(f"{base}/v2/models/{spec.name}/infer", spec.body())
            if status != 200:
                raise RuntimeError(f"{spec.name} answered {status} at {base}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"needs {tool} (apt-get install wrk util-linux)", file=sys.stderr)
            return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelyard-many-models-"))
    bench = Bench(args, work)
    started = dt.datetime.now(dt.UTC)
    load_before = loadavg()
    t0 = time.monotonic()
    with bench.s3_server():
        bench.push_fleet()
        on_s3 = sum(bench.disk_bytes.values()) / 2**20
        took = time.monotonic() - t0
        print(
            f"fleet: {len(bench.specs)} models, {on_s3:.1f} MiB on S3, in {took:.0f} s", flush=True
        )
        results: dict[str, ModeResult] = {}
        results["C"] = bench.modelyard("C", "ModelYard, all preloaded", 64 * 2**30, True)
        total = results["C"].extra["bytes_in_use"]
        budget = int(args.budget * total)
        print(f"C: {total / 2**20:.1f} MiB of models in RAM; B's budget {budget / 2**20:.1f} MiB")
        for i, policy in enumerate(args.policies):
            mode = "B" if i == 0 else f"B-{policy}"
            what = f"ModelYard, RAM budget {args.budget:.0%} of model bytes, {policy.upper()}"
            results[mode] = bench.modelyard(mode, what, budget, False, policy)
            print(f"{mode} done", flush=True)
        if not args.no_naive:
            results["A"] = bench.naive()
    order = ["A", "B", *(f"B-{p}" for p in args.policies[1:]), "C"]
    results = {k: results[k] for k in order if k in results}
    load_after = loadavg()
    sizes = results["C"].extra["sizes"]
    weights = zipf_weights(len(bench.specs), args.zipf)
    ceiling = static_ceiling(weights, [sizes.get(s.name, 1) for s in bench.specs], budget)
    text = table(results)
    notes = [
        f"Fleet: {len(bench.specs)} models ({', '.join(f'{k} {n}' for k, n in _kinds(bench))}),"
        f" {sum(bench.disk_bytes.values()) / 2**20:.1f} MiB on S3, {total / 2**20:.1f} MiB in "
        f"RAM when all are loaded; B's budget {budget / 2**20:.1f} MiB "
        f"(on-disk total = {sum(bench.disk_bytes.values()) / budget:.1f}x the budget).",
        *_hit_notes(results, ceiling, budget),
        f"C became ready in {results['C'].extra['ready_s']:.0f} s ({len(bench.specs)} fetches "
        "from S3, loads and warm-ups).",
        f"Load average (1/5/15 min): {load_before} at start, {load_after} at end (2 shared "
        "cores: other work ran on this machine).",
        *(goals(results) if "A" in results else []),
    ]
    print("\n" + text + "\n\n" + "\n".join(f"- {n}" for n in notes))
    command = "python bench/many_models/run.py" + (" --quick" if args.quick else "")
    section = "\n".join(
        [
            f"### {started:%Y-%m-%d %H:%M} UTC — `{command}`",
            "",
            f"- Machine: {machine()}.",
            f"- {args.connections} connections, {args.warmup:g} s warm-up + {args.duration:g} s "
            f"measured per mode, Zipf s = {args.zipf}, seed {args.seed}.",
            *(f"- {n}" for n in notes),
            "",
            text,
            "",
        ]
    )
    # Only a recorded run replaces the tracked results file; other runs leave theirs in the logs.
    out = ROOT / "bench" / "results" / "many_models_latest.json"
    if not args.record:
        out = bench.logs / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(_json(results, notes, args), option=orjson.OPT_INDENT_2))
    if args.record:
        record(ROOT / "BENCHMARKS.md", section)
        print(f"\nrecorded in BENCHMARKS.md and {out.relative_to(ROOT)}")
    print(f"logs: {bench.logs}")
    return 0


def _hit_notes(results: dict[str, ModeResult], ceiling: float, budget: int) -> list[str]:
    """Per ModelYard mode: hit ratio and loads (B), and the server's CPU: on a shared machine
    requests per CPU-second compare modes that got different shares of their core."""
    notes = []
    c = results.get("C")
    c_eff = c.stats.rps / (c.extra["cpu_s"] / c.stats.duration_s) if c and c.extra["cpu_s"] else 0
    for mode, r in results.items():
        if mode == "A":
            continue
        d = r.stats.duration_s
        cpu = r.extra["cpu_s"] / d
        eff = r.stats.rps / cpu if cpu else 0.0
        text = f"{mode}: server CPU {cpu:.0%} of its core, {eff:,.0f} requests per CPU-second"
        if mode.startswith("B"):
            per_load = r.extra["load_s"] / (r.loads_per_s * d) * 1e3 if r.loads_per_s else 0.0
            text += (f" ({eff / c_eff:.2f}x C's)" if c_eff else "") + (
                f"; hit ratio {r.hit_ratio:.3f} ({r.extra['policy'].upper()}), "
                f"{r.loads_per_s:.0f} loads/s taking {per_load:.1f} ms each (wall time on the "
                f"loader threads, load + warm-up); in RAM at the end "
                f"{r.extra['bytes_in_use'] / 2**20:.1f} MiB of its {budget / 2**20:.1f} MiB"
            )
        notes.append(text + ".")
    notes.append(f"Static ceiling of the hit ratio for this budget and mix: {ceiling:.3f}.")
    return notes


def _kinds(bench: Bench) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for s in bench.specs:
        counts[s.kind] = counts.get(s.kind, 0) + 1
    return sorted(counts.items())


def _json(results: dict[str, ModeResult], notes: list[str], args: Any) -> dict[str, Any]:
    return {
        "args": {k: str(v) for k, v in vars(args).items()},
        "notes": notes,
        "modes": {
            k: {
                "what": r.what,
                **r.stats.as_dict(),
                "rps": r.stats.rps,
                "hit_ratio": r.hit_ratio,
                "loads_per_s": r.loads_per_s,
                "evictions_per_s": r.evictions_per_s,
                "rss_mib": r.rss_mib,
                **{x: y for x, y in r.extra.items() if x != "sizes"},
            }
            for k, r in results.items()
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
