"""What one reload of an evicted model costs, step by step, per kind (no server, no S3).

    .venv/bin/python bench/many_models/profile_reload.py              # 60 models, 5 rounds
    .venv/bin/python bench/many_models/profile_reload.py --cprofile   # + top functions

Builds part of the many-models fleet into a local registry, then reloads every model a few
times exactly as the model cache does on a miss (resolve the version, fetch = verify the local
copy, construct + ``load()``, ``warmup()``, ``memory_bytes()``) and prints the median time of
each step per kind. The first round (cold page cache, first imports) is discarded.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import build, fleet  # noqa: E402

from modelyard.registry import Registry  # noqa: E402
from modelyard.runtime import RuntimeOptions  # noqa: E402
from modelyard.runtimes import get_runtime_class  # noqa: E402

STEPS = ("get_version", "fetch", "load", "warmup", "memory")


def reload_once(reg: Registry, name: str, options: RuntimeOptions) -> dict[str, float]:
    t = [time.perf_counter()]
    mv = reg.get_version(name, 1)
    t.append(time.perf_counter())
    path = reg.fetch(mv)
    t.append(time.perf_counter())
    runtime = get_runtime_class(mv.manifest.runtime)(path, mv.manifest, options)
    runtime.load()
    t.append(time.perf_counter())
    runtime.warmup()
    t.append(time.perf_counter())
    runtime.memory_bytes()
    t.append(time.perf_counter())
    runtime.unload()
    return {s: t[i + 1] - t[i] for i, s in enumerate(STEPS)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=int, default=60)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--workdir", type=Path, default=None, help="reuse a built fleet")
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelyard-reload-"))
    specs = fleet(200)[: args.models]
    with Registry(work / "registry") as reg:
        have = {m.name for m in reg.list_models()}
        for spec in specs:
            if spec.name not in have:
                obj, sample = build(spec, work)
                reg.push(obj, name=spec.name, sample=sample)
        options = RuntimeOptions()
        times: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        prof = cProfile.Profile()
        for r in range(args.rounds):
            for spec in specs:
                if r and args.cprofile:
                    prof.enable()
                got = reload_once(reg, spec.name, options)
                if r and args.cprofile:
                    prof.disable()
                if r:
                    for step, s in got.items():
                        times[spec.kind][step].append(s)
    print(f"{'kind':8} " + " ".join(f"{s:>12}" for s in (*STEPS, "total")) + "   (median ms)")
    for kind, steps in sorted(times.items()):
        med = [statistics.median(steps[s]) * 1e3 for s in STEPS]
        tot = [sum(x) * 1e3 for x in zip(*(steps[s] for s in STEPS), strict=True)]
        print(
            f"{kind:8} " + " ".join(f"{m:12.2f}" for m in med) + f" {statistics.median(tot):12.2f}"
        )
    if args.cprofile:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
