"""Batch-scoring benchmark: ``modelyard batch`` against a plain ONNX Runtime loop.

    .venv/bin/python bench/batch/run.py              # 10M rows, 3 rounds, writes BENCHMARKS.md
    .venv/bin/python bench/batch/run.py --rows 1000000 --rounds 1 --no-record    # smoke run

The input - ``id`` + 20 float32 features, seeded, row groups of 1M rows - is generated once into
``--workdir`` (default ``$TMPDIR/modelyard-bench-batch``) and reused by later runs. For each model,
each round runs three separate processes in turn, each reading the same file:

* ``plain``: ``bench/batch/plain.py``: ``iter_batches`` -> ``np.column_stack`` -> ``session.run``
  (ONNX Runtime defaults), predictions dropped: the limit the acceptance compares with;
* ``plain+write``: the same, also reading ``id`` and writing ``id`` + prediction to Parquet;
* ``modelyard``: ``python -m modelyard batch MODEL --input ... --output ... --key id`` (a fresh
  output directory each time), its in-process path: registry, model cache, signature checks.

Throughput is rows over the scoring loop's seconds (``plain``: after the session is created;
``modelyard``: the job's own timing, after the model is loaded: listing, planning, reading,
scoring, writing, manifests). Peak RSS is the process's ``ru_maxrss`` (from ``wait4``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Batch"
FEATURES = 20
_SCORED = re.compile(r"scored ([\d,]+) rows .* \(([\d,]+) rows/s\)")


def make_input(path: Path, rows: int) -> Path:
    if path.exists():
        return path
    rng = np.random.default_rng(42)
    schema = pa.schema([("id", pa.int64())] + [(f"f{j}", pa.float32()) for j in range(FEATURES)])
    chunk = 1_000_000
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            cols = [pa.array(np.arange(start, start + n, dtype=np.int64))]
            cols += [pa.array(rng.standard_normal(n, dtype=np.float32)) for _ in range(FEATURES)]
            writer.write_batch(pa.record_batch(cols, schema=schema))
    tmp.rename(path)
    return path


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def linear_model(path: Path) -> Path:
    """A weighted sum of the 20 features: almost no compute, so I/O and overheads dominate."""
    w = np.random.default_rng(1).standard_normal((FEATURES, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(w, "W")],
    )
    return _save(graph, path)


def mlp_model(path: Path, hidden: int = 64) -> Path:
    """20 -> 64 -> 64 -> 1 with ReLU: a small tabular neural network, compute-bound."""
    rng = np.random.default_rng(2)
    dims = [FEATURES, hidden, hidden, 1]
    nodes, inits = [], []
    prev = "input"
    for i in range(3):
        w = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
        b = np.zeros(dims[i + 1], dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        out = "output" if i == 2 else f"h{i}"
        nodes.append(
            helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [f"{out}_pre" if i < 2 else out])
        )
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"{out}_pre"], [out]))
        prev = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        inits,
    )
    return _save(graph, path)


MODELS = {"linear": linear_model, "mlp": mlp_model}


def run_measured(cmd: list[str]) -> tuple[str, float, int]:
    """Run ``cmd``; returns (stdout, wall seconds, peak RSS bytes of that process alone)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=_child_env())
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()}\n{text}")
    return text, wall, usage.ru_maxrss * 1024


def _child_env() -> dict[str, str]:
    """Bytecode caching on, as in a normal installation: without it every process compiles
    pandas (imported by pyarrow) again, about 2 s that would land inside the timed loops."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure_plain(model: Path, data: Path, write: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "bench" / "batch" / "plain.py"), str(model), str(data)]
    if write is not None:
        cmd += ["--write", str(write)]
    text, wall, rss = run_measured(cmd)
    doc = orjson.loads(text.strip().splitlines()[-1])
    return {"rows": doc["rows"], "seconds": doc["seconds"], "wall": wall, "rss": rss}


def measure_job(name: str, registry: Path, data: Path, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "modelyard", "batch", name, "--registry", str(registry)]
    cmd += ["--input", str(data), "--output", str(out), "--key", "id", "--no-progress"]
    text, wall, rss = run_measured(cmd)
    match = _SCORED.search(text)
    if match is None:
        raise RuntimeError(f"unexpected output of modelyard batch:\n{text}")
    rows = int(match.group(1).replace(",", ""))
    rate = int(match.group(2).replace(",", ""))
    return {"rows": rows, "seconds": rows / rate, "wall": wall, "rss": rss}


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from modelyard.registry.registry import Registry

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    data = make_input(work / f"input-{args.rows}.parquet", args.rows)
    registry = work / "registry"
    shutil.rmtree(registry, ignore_errors=True)
    results: dict[str, Any] = {"load_start": load_average(), "models": {}}
    with Registry(registry) as reg:
        for name in args.models:
            reg.push(MODELS[name](work / f"{name}.onnx"), name=name)
    for name in args.models:
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "plain+write": [], "modelyard": []}
        for i in range(args.rounds):
            runs["plain"].append(measure_plain(work / f"{name}.onnx", data, None))
            runs["plain+write"].append(
                measure_plain(work / f"{name}.onnx", data, work / "plain-out.parquet")
            )
            runs["modelyard"].append(measure_job(name, registry, data, work / "out"))
            print(
                f"{name} round {i + 1}: "
                + ", ".join(
                    f"{k} {v[-1]['rows'] / v[-1]['seconds']:,.0f} rows/s" for k, v in runs.items()
                ),
                file=sys.stderr,
            )
        results["models"][name] = runs
    results["load_end"] = load_average()
    return results


def summary(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| model | system | rows/s (median) | rows/s (min-max) | vs plain | loop s (median) "
        "| wall s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results["models"].items():
        rates = {k: statistics.median(r["rows"] / r["seconds"] for r in v) for k, v in runs.items()}
        for system, values in runs.items():
            each = [r["rows"] / r["seconds"] / 1e6 for r in values]
            lines.append(
                f"| {name} | {system} | {rates[system]:,.0f} | "
                f"{min(each):.1f}M-{max(each):.1f}M | "
                f"{rates[system] / rates['plain']:.0%} | "
                f"{statistics.median(r['seconds'] for r in values):.2f} | "
                f"{statistics.median(r['wall'] for r in values):.2f} | "
                f"{max(r['rss'] for r in values) / 2**20:,.0f} |"
            )
    return "\n".join(lines)


def section(table: str, results: dict[str, Any], args: argparse.Namespace) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    command = f"bench/batch/run.py --rows {args.rows} --rounds {args.rounds}"
    command += " --models " + ",".join(args.models)
    return f"""{SECTION}

Command: `.venv/bin/python {command}`
({stamp} UTC, this {os.cpu_count()}-core machine; load average {results["load_start"]} at start,
{results["load_end"]} at end: other work shared the machine). Input: one Parquet file of
{args.rows:,} rows, `id` + 20 float32 features (row groups of 1M rows), generated once by the
script. `linear` = a weighted sum of the features (almost no compute: reading, converting and
writing dominate); `mlp` = 20-64-64-1 with ReLU (compute dominates). *plain* =
`bench/batch/plain.py`, a hand-written loop over `ParquetFile.iter_batches` (65,536 rows; the
job's reader options, a 1 MiB buffered stream - with pyarrow's defaults the loop is slower and
needs ~3x the memory) calling ONNX Runtime with its default session options, predictions
dropped; *plain+write* = the same loop also writing `id` + prediction to Parquet (pyarrow's
default writer: dictionary encoding on, most of its cost; modelyard turns it off for numbers);
*modelyard* =
`python -m modelyard batch MODEL --input ... --output DIR --key id` in-process (registry, model
cache, signature checks, 2 batches in flight, 1M-row parts with a manifest). rows/s over the
scoring loop (process start and model load excluded; *wall s* includes them), median of
{args.rounds} interleaved rounds; peak RSS is the largest `ru_maxrss` of the rounds.

{table}
"""


def record(text: str, path: Path) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    from modelyard.bench.report import replace_section

    old = path.read_text() if path.exists() else ""
    path.write_text(replace_section(old, SECTION, text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=lambda s: s.split(","), default=["linear", "mlp"])
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "modelyard-bench-batch"
    )
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    results = bench(args)
    table = summary(results, args)
    print(table)
    if not args.no_record:
        record(section(table, results, args), args.out)
        print(f"recorded in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
