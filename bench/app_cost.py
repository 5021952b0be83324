"""ModelYard's own cost per request, without HTTP: the REST app called in-process.

Builds the app as ``modelyard serve`` does (``configure_logging``, then
:func:`modelyard.app.build_app` with every feature; access lines to /dev/null) on a temporary
registry holding the peer comparison's logreg ONNX model (bench/models.py), loads the model, then
calls the ASGI app directly with the benchmark's V2 JSON body (one row of 20 floats) on a uvloop
loop. Prints the CPU time of the calling thread per request (best of ``--rounds``): what the
dataplane, codecs, observers and ONNX Runtime cost, with no socket, HTTP parser or server in
between. ``--profile`` prints cProfile's top functions instead.

    .venv/bin/python bench/app_cost.py                 # 20 000 requests x 5 rounds
    .venv/bin/python bench/app_cost.py --profile       # where the time goes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "src"):  # run from a checkout without installing
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench.models import build_onnx, v2_request  # noqa: E402
from modelyard.app import App, build_app  # noqa: E402
from modelyard.core.model_cache import CacheKey  # noqa: E402
from modelyard.monitoring.logs import configure_logging  # noqa: E402
from modelyard.registry.registry import Registry  # noqa: E402
from modelyard.settings import Settings  # noqa: E402

MODEL = "logreg"


def scope(body: bytes) -> dict[str, Any]:
    path = f"/v2/models/{MODEL}/infer"
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def measure(app: App, n: int, rounds: int, profile: bool) -> str:
    rest = app.rest_app()
    body = orjson.dumps(v2_request())
    base = scope(body)
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def one() -> None:
        await rest(dict(base), receive, send)

    version = app.registry.aliases(MODEL)["production"]
    await app.cache.load(CacheKey(MODEL, version))
    for _ in range(2000):  # warm-up: inline-predict decision, caches, allocator
        await one()
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            await one()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        return out.getvalue()
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(n):
            await one()
        best = min(best, (time.thread_time() - started) / n)
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected HTTP statuses: {sorted(set(statuses))}")
    return f"{best * 1e6:.1f} µs of CPU per request (best of {rounds} x {n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="requests per round")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile's top 25 instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_onnx(MODEL, Path(tmp))
        registry = Path(tmp) / "registry"
        with Registry(registry) as reg:
            reg.push(model, name=MODEL, alias="production")
        settings = Settings(registry=str(registry), ui=True)
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # the access log
        try:
            configure_logging(settings)
            app = build_app(settings)
            try:
                import uvloop

                result = uvloop.run(measure(app, args.n, args.rounds, args.profile))
            finally:
                app.close()
        finally:
            sys.stderr.close()
            sys.stderr = stderr
    print(result)


if __name__ == "__main__":
    main()
