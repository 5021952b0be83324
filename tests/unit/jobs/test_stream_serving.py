"""The stream consumer on the real serving core: registry, model cache, validation, batcher."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from modelyard.app import App, build_app
from modelyard.core.fleet_wiring import install_hot_swap
from modelyard.core.observer import BatchEvent, Observer
from modelyard.errors import ModelNotFoundError
from modelyard.jobs.sources.memory import MemoryStream
from modelyard.jobs.stream import ServingModel, StreamConsumer, StreamOptions
from modelyard.registry.registry import Registry
from modelyard.settings import load_settings
from tests.testmodels import linear_fp32_model
from tests.unit.jobs.streamkit import results, run_until, until

FEATURES = 4


class Batches(Observer):
    def __init__(self) -> None:
        self.rows: list[int] = []

    def on_batch(self, event: BatchEvent) -> None:
        self.rows.append(event.rows)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    root = tmp_path / "registry"
    with Registry(root) as registry:
        path = linear_fp32_model(tmp_path / "linear.onnx", FEATURES)
        registry.push(path, name="linear", alias="production")
        registry.push(
            path,
            name="linear",
            alias="production",
            batching={"max_batch_size": 64, "max_wait_us": 20_000},
        )
    built = build_app(load_settings(registry=str(root)), features=False)
    yield built
    built.close()


def row(i: int) -> list[float]:
    return [float(i + j) for j in range(FEATURES)]


def consumer(
    app: App,
    source: MemoryStream,
    sink: MemoryStream,
    dead: MemoryStream,
    ref: str | None = "production",
) -> StreamConsumer:
    return StreamConsumer(
        ServingModel(app.serving, "linear", ref),
        source.source(),
        sink.sink(),
        dead.sink(),
        options=StreamOptions(batch=32, max_in_flight=64, poll_s=0.01),
    )


def test_messages_are_scored_through_the_batcher(app: App) -> None:
    batches = Batches()
    app.observers.add(batches)
    source, sink, dead = MemoryStream("in"), MemoryStream("out"), MemoryStream("dead")
    source.append(*(orjson.dumps({"id": f"m{i}", "inputs": {"input": row(i)}}) for i in range(96)))
    c = consumer(app, source, sink, dead)
    stats = asyncio.run(run_until(c, lambda: len(source.acked()) == 96))
    docs = results(sink.bodies)
    assert len(docs) == 96 and stats.scored == 96
    assert docs["m5"] == {
        "id": "m5",
        "model": "linear",
        "version": 2,
        "outputs": {"output": [[sum(row(5))]]},
    }
    # One request per message, coalesced by the model's batcher into few predict calls.
    assert sum(batches.rows) == 96 and max(batches.rows) > 1 and len(batches.rows) < 96


def test_v2_bodies_and_signature_errors(app: App) -> None:
    source, sink, dead = MemoryStream("in"), MemoryStream("out"), MemoryStream("dead")
    x = np.arange(2 * FEATURES, dtype=np.float32).reshape(2, FEATURES)
    v2 = {
        "id": "v2",
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [2, FEATURES],
                "data": x.ravel().tolist(),
            }
        ],
        "outputs": [{"name": "output"}],
    }
    source.append(
        orjson.dumps(v2),
        orjson.dumps({"id": "narrow", "inputs": {"input": [1.0, 2.0]}}),
        orjson.dumps({"id": "unknown", "inputs": {"nope": [1.0]}}),
    )
    c = consumer(app, source, sink, dead, ref=None)
    asyncio.run(run_until(c, lambda: len(source.acked()) == 3))
    assert results(sink.bodies)["v2"]["outputs"] == {
        "output": x.sum(axis=1, keepdims=True).tolist()
    }
    letters = {d["id"]: d for d in map(orjson.loads, dead.bodies)}
    assert sorted(letters) == ["narrow", "unknown"]
    assert {d["code"] for d in letters.values()} == {"INVALID_ARGUMENT"}
    assert "input" in str(letters["narrow"]["error"])
    assert "nope" in str(letters["unknown"]["error"])


def test_an_unknown_model_fails_before_anything_is_fetched(app: App) -> None:
    source, sink, dead = MemoryStream("in"), MemoryStream("out"), MemoryStream("dead")
    source.append(b"{}")
    c = StreamConsumer(
        ServingModel(app.serving, "nope", None), source.source(), sink.sink(), dead.sink()
    )
    with pytest.raises(ModelNotFoundError):
        asyncio.run(c.run())
    assert c.stats.received == 0


def test_an_alias_moved_to_a_version_that_cannot_load_leaves_the_old_one_scoring(
    app: App, tmp_path: Path
) -> None:
    """As in a server (the hot swapper run_stream installs): the new version loads first, and
    one that fails (its file fails verification) leaves the old version scoring."""
    _, swapper = install_hot_swap(app)
    artifacts = tmp_path / "registry" / "artifacts"
    before = set(artifacts.rglob("*.onnx"))
    app.registry.push(linear_fp32_model(tmp_path / "v3.onnx", FEATURES), name="linear")
    (broken,) = set(artifacts.rglob("*.onnx")) - before
    broken.write_bytes(b"not the pushed model")
    source, sink, dead = MemoryStream("in"), MemoryStream("out"), MemoryStream("dead")

    async def scenario() -> None:
        c = consumer(app, source, sink, dead)
        task = asyncio.create_task(c.run())
        source.append(orjson.dumps({"id": "before", "inputs": {"input": row(0)}}))
        await until(lambda: len(source.acked()) == 1)
        app.registry.set_alias("linear", "production", 3)
        await swapper.refresh()  # what the watcher does on the change: the swap fails
        source.append(orjson.dumps({"id": "after", "inputs": {"input": row(1)}}))
        await until(lambda: len(source.acked()) == 2)
        c.stop()
        await task

    asyncio.run(scenario())
    versions = {doc_id: doc["version"] for doc_id, doc in results(sink.bodies).items()}
    assert versions == {"before": 2, "after": 2} and dead.bodies == []
