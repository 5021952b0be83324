"""The load generator of the many-models benchmark: ``wrk`` with a Lua script that sends each
request to a model drawn from a Zipf(s) distribution over the fleet (rank 1 = most popular),
with that model's own V2 JSON body. Each wrk thread seeds its generator from a fixed seed, so a
run's request mix is reproducible."""

from __future__ import annotations

import subprocess
from pathlib import Path

from models import ModelSpec, zipf_weights

from modelyard.bench.stats import RunStats
from modelyard.bench.wrk import done_hook, lua_string, parse_wrk_output


def zipf_script(specs: list[ModelSpec], s: float, seed: int) -> str:
    """A wrk script: ``request()`` picks a model by Zipf rank (binary search on the CDF)."""
    cdf, acc = [], 0.0
    for w in zipf_weights(len(specs), s):
        acc += w
        cdf.append(acc)
    cdf[-1] = 1.0
    lines = [
        "local paths = {",
        *(f'  "/v2/models/{spec.name}/infer",' for spec in specs),
        "}",
        "local bodies = {",
        *(f"  {lua_string(spec.body().decode())}," for spec in specs),
        "}",
        "local cdf = {" + ",".join(f"{c:.10f}" for c in cdf) + "}",
        "local reqs = {}",
        "local counter = 0",
        "setup = function(thread)",
        "  counter = counter + 1",
        "  thread:set('tid', counter)",
        "end",
        "init = function(args)",
        f"  math.randomseed({seed} + (tid or 0))",
        '  local headers = {["Content-Type"] = "application/json"}',
        "  for i = 1, #paths do",
        '    reqs[i] = wrk.format("POST", paths[i], headers, bodies[i])',
        "  end",
        "end",
        "request = function()",
        "  local u = math.random()",
        "  local lo, hi = 1, #cdf",
        "  while lo < hi do",
        "    local mid = math.floor((lo + hi) / 2)",
        "    if cdf[mid] < u then lo = mid + 1 else hi = mid end",
        "  end",
        "  return reqs[lo]",
        "end",
    ]
    return "\n".join(lines) + "\n" + done_hook()


def run_wrk(
    url: str,
    script: Path,
    *,
    duration_s: float,
    connections: int,
    timeout_s: float,
    cpus: str,
    log: Path,
) -> RunStats:
    """One wrk run pinned to ``cpus``; its output is appended to ``log``."""
    cmd = [
        "taskset",
        "-c",
        cpus,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(round(duration_s), 1)}s",
        f"--timeout={int(timeout_s)}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n{done.stdout}\n{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return parse_wrk_output(done.stdout)
