"""The many-models request mix replayed in-process against the model cache, one policy after
another: hit ratio, loads and reload seconds per policy, without HTTP, wrk or S3.

    .venv/bin/python bench/many_models/replay.py                       # 200 models, 40k requests
    .venv/bin/python bench/many_models/replay.py --workdir /tmp/fleet  # reuse a built fleet

It builds the fleet into a local registry (or reuses ``--workdir``), loads every model once to
measure the total model bytes (as mode C does), then for each policy builds a fresh cache with a
RAM budget of ``--budget`` of that total and sends the same seeded Zipf sequence of requests
through ``lease_sync`` + ``predict``, one at a time. Use it to compare eviction policies quickly;
``run.py`` is the benchmark of record.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from itertools import accumulate
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from models import ModelSpec, build, fleet, zipf_weights  # noqa: E402
from report import static_ceiling  # noqa: E402

from modelyard.app import make_loader  # noqa: E402
from modelyard.core.cache_policy import POLICIES  # noqa: E402
from modelyard.core.model_cache import CacheKey, ModelCache  # noqa: E402
from modelyard.registry import Registry  # noqa: E402
from modelyard.runtime import RuntimeOptions  # noqa: E402


def registry(work: Path, n: int, seed: int) -> Registry:
    reg = Registry(work / "registry")
    specs = fleet(n, seed)
    have = {m.name for m in reg.list_models()} if (work / "registry").exists() else set()
    for spec in specs:
        if spec.name not in have:
            obj, sample = build(spec, work)
            reg.push(obj, name=spec.name, sample=sample)
    return reg


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--requests", type=int, default=40_000)
    p.add_argument("--budget", type=float, default=0.25)
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="modelyard-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    specs = fleet(args.models, args.seed)
    reg = registry(work, args.models, args.seed)
    loader = make_loader(reg, RuntimeOptions())
    keys = [CacheKey(s.name, 1) for s in specs]
    with contextlib.closing(ModelCache(loader, budget_bytes=1 << 40)) as full:
        for key in keys:
            full.get_sync(key)
        sizes = {e.key: e.bytes for e in full.entries()}
    total = sum(sizes.values())
    budget = int(args.budget * total)
    weights = zipf_weights(len(specs), args.zipf)
    ceiling = static_ceiling(weights, [sizes[k] for k in keys], budget)
    rng = random.Random(args.seed)
    cdf = list(accumulate(weights))
    sequence = rng.choices(keys, cum_weights=cdf, k=args.requests)
    inputs = {k: {"input": _row(s)} for k, s in zip(keys, specs, strict=True)}
    print(
        f"{len(specs)} models, {total / 2**20:.1f} MiB in RAM, budget {budget / 2**20:.1f} MiB, "
        f"{args.requests} requests, static ceiling {ceiling:.3f}"
    )
    print(f"{'policy':8} {'hit ratio':>10} {'loads':>7} {'load s':>8} {'wall s':>8} {'req/s':>8}")
    for policy in args.policies.split(","):
        cache = ModelCache(loader, budget_bytes=budget, policy=policy)
        try:
            t0 = time.perf_counter()
            for key in sequence:
                with cache.lease_sync(key) as runtime:
                    runtime.predict(inputs[key])
            wall = time.perf_counter() - t0
            st = cache.stats
        finally:
            cache.close()
        ratio = st.hits / max(st.hits + st.misses, 1)
        print(
            f"{policy:8} {ratio:10.3f} {st.loads:7d} {st.load_seconds_total:8.2f} "
            f"{wall:8.2f} {len(sequence) / wall:8.0f}"
        )
    reg.close()
    return 0


def _row(spec: ModelSpec) -> np.ndarray:
    return np.zeros((1, spec.features), dtype=np.float32)


if __name__ == "__main__":
    raise SystemExit(main())
