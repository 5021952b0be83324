"""Stream-scoring benchmark: ``modelyard stream`` against a hand-written consumer, per broker.

    .venv/bin/python bench/stream/run.py                      # 20k messages, 3 rounds, records
    .venv/bin/python bench/stream/run.py --messages 2000 --rounds 1 --no-record   # smoke run

Each broker (Redis, NATS JetStream, Tansu for the Kafka protocol) runs as a throwaway process on
a free port. Per round and system, a fresh stream holding ``--messages`` messages
``{"id": i, "inputs": {"input": [20 floats]}}`` is produced first; then one child process
(``run.py --child ...``) loads the model and consumes the whole stream into a sink stream:

* ``modelyard``: :class:`~modelyard.jobs.stream.StreamConsumer` on the serving core (what
  ``modelyard stream`` runs), ``--batch 64 --max-in-flight 512``: each fetch of up to 64
  messages becomes one request through the dataplane, and the version's batcher (hints: 256
  rows, 500 us) merges the requests of concurrent fetches;
* ``modelyard-unbatched``: the same with ``--batch 1 --max-in-flight 1`` and no batching hints:
  one message at a time, what micro-batching is compared with;
* ``plain``: ``bench/stream/plain.py``, a hand-written loop per broker: fetch 64, one ONNX Runtime
  call for all of them, write, acknowledge.

Messages/s = messages / seconds from the first message fetched to the last acknowledged (model
load, connections and Kafka group joins excluded), median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import brokers  # bench/stream/brokers.py (the script's directory is on sys.path)
import numpy as np
import onnx
import orjson
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]

SECTION = "## Streams"
FEATURES = 20
SYSTEMS = ("modelyard", "modelyard-unbatched", "plain")


def make_model(path: Path) -> Path:
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((FEATURES, 1)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["output"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_registry(work: Path) -> tuple[str, Path]:
    from modelyard.registry.registry import Registry

    model = make_model(work / "linear.onnx")
    root = work / "registry"
    if not root.exists():
        with Registry(root) as registry:
            registry.push(model, name="linear")
            registry.push(
                model, name="linear-batched", batching={"max_batch_size": 256, "max_wait_us": 500}
            )
    return str(root), model


def messages(n: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32).tolist()
    return [orjson.dumps({"id": i, "inputs": {"input": row}}) for i, row in enumerate(x)]


# ---- child: one consumer, one stream ----------------------------------------------------------
async def child_modelyard(args: argparse.Namespace, names: dict[str, str]) -> float:
    from modelyard.app import build_app
    from modelyard.core.model_cache import CacheKey
    from modelyard.jobs.sources import open_sink, open_source
    from modelyard.jobs.stream import ServingModel, StreamConsumer, StreamOptions
    from modelyard.settings import load_settings

    unbatched = args.child == "modelyard-unbatched"
    model = "linear" if unbatched else "linear-batched"
    options = (
        StreamOptions(batch=1, max_in_flight=1)
        if unbatched
        else StreamOptions(batch=64, max_in_flight=512)
    )
    app = build_app(load_settings(registry=args.registry), features=False)
    mv = app.registry.resolve(model, None)
    await app.cache.load(CacheKey(mv.model, mv.version))
    urls = brokers.urls(args.broker, args.address, names)
    sink, dead = await open_sink(urls["sink"]), await open_sink(urls["dead"])
    source = await open_source(urls["source"], group="modelyard", consumer="c1")
    consumer = StreamConsumer(
        ServingModel(app.serving, model, None), source, sink, dead, options=options
    )
    task = asyncio.create_task(consumer.run())
    started = None
    while consumer.stats.acked < args.messages:
        if started is None and consumer.stats.received:
            started = time.perf_counter()
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.stop()
    await task
    for closable in (source, sink, dead):
        await closable.close()
    app.close()
    return elapsed


def child(args: argparse.Namespace) -> None:
    names = orjson.loads(args.names)
    if args.child == "plain":
        from plain import LOOPS, scorer

        loop = LOOPS[args.broker]
        seconds = asyncio.run(loop(args.address, names, args.messages, 64, scorer(args.model)))
    else:
        seconds = asyncio.run(child_modelyard(args, names))
    print(orjson.dumps({"seconds": seconds}).decode())


# ---- parent -----------------------------------------------------------------------------------
def run_one(
    args: argparse.Namespace,
    system: str,
    broker: str,
    address: str,
    registry: str,
    model: Path,
    bodies: list[bytes],
) -> float:
    names = brokers.fresh_names(broker)
    brokers.produce(broker, address, names, bodies)
    argv = [
        sys.executable,
        str(Path(__file__)),
        "--child",
        system,
        "--broker",
        broker,
        "--address",
        address,
        "--names",
        orjson.dumps(names).decode(),
        "--registry",
        registry,
        "--model",
        str(model),
        "--messages",
        str(len(bodies)),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{system} on {broker} failed:\n{out.stderr[-3000:]}")
    seconds = float(orjson.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    return len(bodies) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--brokers", default="redis,nats,kafka")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    for hidden in ("--broker", "--address", "--names", "--registry", "--model"):
        parser.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-stream-"))
    results: dict[tuple[str, str], list[float]] = {}
    try:
        registry, model = make_registry(work)
        bodies = messages(args.messages)
        with ExitStack() as stack:
            for broker in args.brokers.split(","):
                address = stack.enter_context(brokers.start(broker, work))
                for rnd in range(args.rounds):
                    for system in args.systems.split(","):
                        rate = run_one(args, system, broker, address, registry, model, bodies)
                        results.setdefault((broker, system), []).append(rate)
                        print(
                            f"round {rnd + 1} {broker:6} {system:20} {rate:>10,.0f} msg/s",
                            flush=True,
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = report(args, results)
    print(table)
    if args.record:
        record(args, table, started, load_start, os.getloadavg())


def report(args: argparse.Namespace, results: dict[tuple[str, str], list[float]]) -> str:
    lines = [
        "| broker | system | msg/s (median) | msg/s (min-max) | vs plain | vs unbatched |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (broker, system), rates in results.items():
        median = statistics.median(rates)
        plain = results.get((broker, "plain"))
        unbatched = results.get((broker, "modelyard-unbatched"))
        vs_plain = f"{median / statistics.median(plain):.0%}" if plain else "-"
        vs_unb = f"{median / statistics.median(unbatched):.1f}x" if unbatched else "-"
        lines.append(
            f"| {broker} | {system} | {median:,.0f} | {min(rates):,.0f}-{max(rates):,.0f} "
            f"| {vs_plain} | {vs_unb} |"
        )
    return "\n".join(lines)


def record(
    args: argparse.Namespace,
    table: str,
    started: datetime,
    load_start: tuple[float, ...],
    load_end: tuple[float, ...],
) -> None:
    from modelyard.bench.report import replace_section

    command = (
        f".venv/bin/python bench/stream/run.py --messages {args.messages} --rounds {args.rounds}"
    )
    load = lambda values: " ".join(f"{v:.2f}" for v in values)  # noqa: E731
    text = f"""{SECTION}

Command: `{command}`
({started:%Y-%m-%d %H:%M} UTC, this {os.cpu_count()}-core machine; load average
{load(load_start)} at start, {load(load_end)} at end). Each broker is a throwaway local
process (redis-server 7, nats-server 2.9 with JetStream, Tansu 0.6 for the Kafka protocol). A
fresh stream of {args.messages:,} messages `{{"id", "inputs": {{"input": [20 floats]}}}}` is
produced before each consumer starts; the consumer (a child process) scores it with a 20-feature
linear ONNX model into a sink stream, acknowledging each message after its result is written.

* *modelyard*: `StreamConsumer` on the serving core, exactly what `modelyard stream` runs
  (`--batch 64 --max-in-flight 512`): the messages of a fetch go through the dataplane as one
  validated request, and the version's batcher (hints 256 rows / 500 us) merges concurrent
  fetches; a merged request that fails is retried message by message;
* *modelyard-unbatched*: the same with `--batch 1 --max-in-flight 1` and no batching hints
  (one message at a time);
* *plain*: `bench/stream/plain.py`, a hand-written loop per broker (fetch 64, one ONNX Runtime
  call, write, acknowledge; no validation, no dead letters).

msg/s = messages / seconds from the first message fetched to the last acknowledged, median of
{args.rounds} interleaved rounds. What *plain* skips and *modelyard* pays per message: parsing
it into a typed request checked against the signature (so a bad message is dead-lettered, not
fed to the model), one result document per message with model and version, per-message
acknowledgement bookkeeping, and the dataplane (resolver, model cache lease, batcher).

{table}
"""
    path = ROOT / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(current, SECTION, text))  # our own section only


if __name__ == "__main__":
    main()
