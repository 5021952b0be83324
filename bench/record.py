"""Where a run's results go: the JSON file, and a dated section appended to BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from modelyard.bench.report import append_under_heading

RUNS_HEADING = "## Peer comparison: runs (newest last)"
HEADER = """\
# Benchmarks

Every performance claim names the command that reproduces it and the machine, and compares with
peers **measured in the same run on the same machine**. The peer comparison below comes from
`bench/run.py`: reproduce it with `make bench` (= `.venv/bin/python bench/run.py`); a ~3-minute
smoke run is `.venv/bin/python bench/run.py --quick` (it records nothing here unless `--record`).

## Peer comparison: method

- **Model**: scikit-learn `LogisticRegression` on 20 features, converted to ONNX with skl2onnx
  (`zipmap=False`; input `input` FP32 [-1, 20]), built by `bench/models.py`. MLServer's
  scikit-learn runtime serves the same estimator, refit with a fixed seed in its own venv.
- **Request**: `POST /v2/models/logreg/infer` with an Open Inference Protocol V2 JSON body holding
  one row of 20 floats; every system gets the byte-identical body from the same wrk Lua script.
- **Pinning**: the server runs on core 0 (`taskset -c 0`, all its processes), the load generator
  on core 1 (`taskset -c 1 wrk -t1`). Every ONNX Runtime session uses one intra-op thread.
- **Load**: closed loop, `wrk` with N keep-alive connections. Each system gets a discarded 2 s
  warm-up, then the headline point (64 connections) runs 3 x 10 s and is summarised by medians
  (req/s, p50, p99; errors are summed); the sweep points (1, 8, 256 connections) run once each
  and only feed the latency-vs-throughput plot (`bench/results/latest.png`).
- **Columns**: *errors* = non-2xx responses + socket errors + timeouts over all runs of the point;
  ratios are the system's median over ModelYard's (req/s > 1 = faster, p99 < 1 = lower tail).
- **Systems**: nginx answering the model's V2 response as a constant (the HTTP ceiling: no JSON
  parsing, no inference); a hand-written raw-ASGI + orjson + ONNX Runtime app
  (`bench/baseline_asgi.py`) on uvicorn (httptools, uvloop) and on granian; ModelYard with
  batching off (the default) and on (32 rows, 1 ms); MLServer with a small custom ONNX Runtime
  `MLModel` and with its scikit-learn runtime; BentoML with a service calling ONNX Runtime.
  Peers run with their defaults otherwise, from their own pinned venvs in `bench/.venvs/`.
- **Machine**: each run below names its own: CPU model (`/proc/cpuinfo`), `nproc`, memory,
  kernel, Python, and the versions of every system and tool it measured.
- **Caveat**: a 2-core machine shared with other work; the load average at the start and end of
  each run is recorded with it. Compare ratios within one run, not absolute numbers across runs.

Results: `bench/results/latest.json` (all runs, all points) and `bench/results/latest.png`.

## Peer comparison: runs (newest last)
"""


def machine() -> dict[str, Any]:
    """What the run ran on: CPU model, cores, memory, kernel, Python."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def tool_version(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        return "not installed"
    flag = "-v"
    done = subprocess.run([path, flag], capture_output=True, text=True, check=False)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def section(
    *,
    when: str,
    command: str,
    table: str,
    info: dict[str, Any],
    versions: dict[str, dict[str, str]],
    notes: list[str],
) -> str:
    """The Markdown section one run appends to BENCHMARKS.md."""
    m = info["machine"]
    # Systems from the same install (e.g. both MLServer runtimes) share one line.
    groups: dict[str, list[str]] = {}
    for system, pins in versions.items():
        text = ", ".join(f"{k} {v}" for k, v in pins.items())
        groups.setdefault(text, []).append(system)
    lines = [
        f"### {when} — `{command}`",
        "",
        f"- Machine: {m['cpu']}, `nproc` = {m['nproc']}, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}.",
        f"- Load average (1/5/15 min): {info['load_before']} at start, {info['load_after']} "
        "at end.",
        f"- Point: {info['model']}, {info['connections']} connections, "
        f"{info['runs']} x {info['duration_s']} s runs (median), wrk `-t{info['threads']}`.",
        "- Versions:",
        *(f"  - {', '.join(names)}: {text}" for text, names in groups.items()),
        *(f"- {n}" for n in notes),
        "",
        table,
        "",
    ]
    return "\n".join(lines) + "\n"


def append(path: Path, text: str) -> None:
    """Add a run's section at the end of the runs section of BENCHMARKS.md (other benchmarks'
    sections in the same file stay as they are); the method header is written when missing."""
    old = path.read_text() if path.exists() else ""
    path.write_text(append_under_heading(old, RUNS_HEADING, text, preamble=HEADER))
