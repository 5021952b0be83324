"""The stream consumer's delivery guarantees, on an in-memory broker and a fake model."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from modelyard.errors import (
    ChecksumMismatchError,
    DeadlineExceededError,
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    ModelTooLargeError,
    PayloadTooLargeError,
    UnavailableError,
)
from modelyard.jobs.sources.memory import MemoryStream
from modelyard.jobs.stream import StreamConsumer, StreamMetrics, StreamOptions
from modelyard.jobs.stream_codec import is_transient
from tests.unit.jobs.streamkit import FakeModel, message, results, run_until, until

FAST = {"poll_s": 0.01, "retry_initial_s": 0.001, "retry_max_s": 0.002}


def consumer(
    model: FakeModel,
    source: MemoryStream,
    sink: MemoryStream,
    dead: MemoryStream,
    **options: int | bool,
) -> StreamConsumer:
    return StreamConsumer(
        model,
        source.source(),
        sink.sink(),
        dead.sink(),
        options=StreamOptions(**{**FAST, **options}),
    )


def streams(n: int) -> tuple[MemoryStream, MemoryStream, MemoryStream]:
    source, sink, dead = MemoryStream("in"), MemoryStream("out"), MemoryStream("dead")
    source.append(*(message(i) for i in range(n)))
    return source, sink, dead


def test_every_message_is_scored_written_and_acknowledged() -> None:
    source, sink, dead = streams(300)
    c = consumer(FakeModel(), source, sink, dead, batch=32)
    stats = asyncio.run(run_until(c, lambda: len(source.acked()) == 300))
    docs = results(sink.bodies)
    assert sorted(docs) == list(range(300))
    assert docs[7] == {"id": 7, "model": "m", "version": 3, "outputs": {"y": [[14.0, 15.0]]}}
    assert (stats.scored, stats.dead_lettered, stats.acked, stats.left_unacked) == (300, 0, 300, 0)
    assert dead.bodies == []


def test_a_poison_message_is_dead_lettered_and_does_not_block_the_rest() -> None:
    source, sink, dead = streams(0)
    source.append(
        message(0),
        b"not json",
        orjson.dumps({"id": "no-inputs"}),
        message(3, x=["a", "b"]),  # x is FP32
        message(4),
    )
    model = FakeModel()
    model.poison[4] = InvalidInputError("the model refused it")
    c = consumer(model, source, sink, dead)
    stats = asyncio.run(run_until(c, lambda: len(source.acked()) == 5))
    assert sorted(results(sink.bodies)) == [0]
    letters = {str(d["id"]): d for d in map(orjson.loads, dead.bodies)}
    assert sorted(letters) == ["3", "4", "in/1", "no-inputs"]
    assert letters["in/1"]["body"] == "not json"
    assert letters["in/1"]["source"] == "in/1" and letters["in/1"]["code"] == "INVALID_ARGUMENT"
    assert "not JSON" in str(letters["in/1"]["error"])
    assert letters["4"]["error"] == "the model refused it"
    assert stats.dead_lettered == 4 and stats.errors == {"INVALID_ARGUMENT": 4}


def test_an_unexpected_model_failure_is_dead_lettered_as_internal() -> None:
    source, sink, dead = streams(2)
    model = FakeModel()
    model.poison[1] = RuntimeError("boom")
    c = consumer(model, source, sink, dead)
    asyncio.run(run_until(c, lambda: len(source.acked()) == 2))
    (letter,) = map(orjson.loads, dead.bodies)
    assert letter["code"] == "INTERNAL" and letter["error"] == "RuntimeError: boom"


def test_transient_errors_are_retried_not_dead_lettered() -> None:
    source, sink, dead = streams(3)
    model = FakeModel()
    model.failures[1] = [ModelLoadError("loading"), UnavailableError("queue full")]
    c = consumer(model, source, sink, dead, merge=False)
    stats = asyncio.run(run_until(c, lambda: len(source.acked()) == 3))
    assert sorted(results(sink.bodies)) == [0, 1, 2] and dead.bodies == []
    assert stats.retried == 2


def test_a_broken_deployment_is_retried_not_dead_lettered() -> None:
    # An alias moved to a version whose artifact fails its checksum, then an alias removed:
    # the deployment's state, not the messages'. They are scored once it is fixed.
    source, sink, dead = streams(3)
    model = FakeModel()
    model.failures[1] = [
        ChecksumMismatchError("fraud:3: file 'model.onnx' has sha256 1da5, expected 272b"),
        ModelNotFoundError("model 'fraud' has no alias 'production'"),
        ModelTooLargeError("fraud:3 needs more than the cache budget"),
    ]
    c = consumer(model, source, sink, dead, merge=False)
    stats = asyncio.run(run_until(c, lambda: len(source.acked()) == 3))
    assert sorted(results(sink.bodies)) == [0, 1, 2] and dead.bodies == []
    assert stats.retried == 3


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (InvalidInputError("bad"), False),
        (PayloadTooLargeError("too big"), False),
        (InferenceError("the model raised"), False),
        (RuntimeError("unexpected"), False),
        (UnavailableError("loading"), True),
        (ChecksumMismatchError("sha256"), True),
        (ModelNotFoundError("gone"), True),
        (DeadlineExceededError("late"), True),
    ],
)
def test_only_what_a_message_causes_is_final(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_in_flight_messages_are_bounded() -> None:
    async def scenario() -> None:
        source, sink, dead = streams(100)
        gate = asyncio.Event()
        model = FakeModel(gate)
        c = consumer(model, source, sink, dead, max_in_flight=10, batch=4, merge=False)
        task = asyncio.create_task(c.run())
        await until(lambda: c.in_flight == 10)
        fetched = c.source.fetches  # type: ignore[attr-defined]
        for _ in range(20):
            await asyncio.sleep(0)
        assert c.in_flight == 10 and model.running == 10
        assert c.source.fetches == fetched  # type: ignore[attr-defined]  # full: no fetching
        gate.set()
        await until(lambda: len(source.acked()) == 100)
        c.stop()
        await task
        assert model.most_running == 10

    asyncio.run(scenario())


def test_nothing_is_acknowledged_before_the_result_is_written() -> None:
    async def scenario() -> None:
        source, sink, dead = streams(5)
        out = sink.sink()
        out.fail_next = 3
        c = StreamConsumer(
            FakeModel(), source.source(), out, dead.sink(), options=StreamOptions(**FAST)
        )
        task = asyncio.create_task(c.run())
        await until(lambda: out.writes >= 2)
        assert source.acked() == set()  # the writes failed: nothing is done
        await until(lambda: len(source.acked()) == 5)
        c.stop()
        await task
        assert sorted(results(sink.bodies)) == [0, 1, 2, 3, 4]

    asyncio.run(scenario())


def test_graceful_stop_finishes_what_is_in_flight_and_fetches_nothing_more() -> None:
    async def scenario() -> None:
        source, sink, dead = streams(50)
        gate = asyncio.Event()
        c = consumer(FakeModel(gate), source, sink, dead, max_in_flight=8, batch=8)
        task = asyncio.create_task(c.run())
        await until(lambda: c.in_flight == 8)
        c.stop()
        gate.set()
        stats = await task
        assert stats.received == 8 and stats.acked == 8
        assert sorted(results(sink.bodies)) == list(range(8))
        assert source.acked() == set(range(8))

    asyncio.run(scenario())


def test_a_crash_loses_nothing_the_next_consumer_gets_the_unacknowledged() -> None:
    async def scenario() -> None:
        source, sink, dead = streams(40)
        gate = asyncio.Event()
        first = consumer(FakeModel(gate), source, sink, dead, max_in_flight=16, batch=8)
        task = asyncio.create_task(first.run())
        await until(lambda: first.in_flight == 16)
        task.cancel()  # killed: nothing written, nothing acknowledged
        await asyncio.gather(task, return_exceptions=True)
        first.source.crash()  # type: ignore[attr-defined]
        second = consumer(FakeModel(), source, sink, dead)
        await run_until(second, lambda: len(source.acked()) == 40)
        assert sorted(results(sink.bodies)) == list(range(40))

    asyncio.run(scenario())


def test_a_sink_down_at_shutdown_leaves_the_messages_for_redelivery() -> None:
    async def scenario() -> None:
        source, sink, dead = streams(4)
        out = sink.sink()
        out.fail_next = 1_000_000
        c = StreamConsumer(
            FakeModel(), source.source(), out, dead.sink(), options=StreamOptions(**FAST)
        )
        task = asyncio.create_task(c.run())
        await until(lambda: out.writes >= 3)
        c.stop()
        stats = await task
        assert source.acked() == set() and stats.left_unacked == 4

    asyncio.run(scenario())


def test_lag_is_a_method_a_gauge_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    source, sink, dead = streams(10)
    metrics = StreamMetrics()
    c = StreamConsumer(
        FakeModel(),
        source.source(),
        sink.sink(),
        dead.sink(),
        options=StreamOptions(**FAST),
        metrics=metrics,
    )
    assert asyncio.run(c.lag()) == 10
    assert metrics.registry.get_sample_value(
        "modelyard_stream_lag_messages", {"source": "memory:in"}
    ) == pytest.approx(10)
    with caplog.at_level(logging.INFO, logger="modelyard.stream"):
        asyncio.run(run_until(c, lambda: len(source.acked()) == 10))
    assert any("lag 0, scored 10" in r.getMessage() for r in caplog.records)
    sample = metrics.registry.get_sample_value
    assert sample("modelyard_stream_messages_total", {"outcome": "scored"}) == pytest.approx(10)
    assert sample("modelyard_stream_lag_messages", {"source": "memory:in"}) == pytest.approx(0)


@pytest.mark.parametrize(
    ("options", "flag"),
    [({"max_in_flight": 0}, "--max-in-flight"), ({"batch": 0}, "--batch")],
)
def test_bad_options_name_the_flag(options: dict[str, int], flag: str) -> None:
    with pytest.raises(InvalidInputError, match=flag):
        StreamOptions(**options)


def test_one_fetch_is_one_model_call_when_the_model_is_row_wise() -> None:
    source, sink, dead = streams(0)
    source.append(*(message(i) for i in range(8)), message(8, x=[[8, 1], [9, 1]]))
    model = FakeModel()
    c = consumer(model, source, sink, dead, batch=16)
    asyncio.run(run_until(c, lambda: len(source.acked()) == 9))
    assert model.rows == [10]  # 8 one-row messages and a two-row one, in one call
    docs = results(sink.bodies)
    assert docs[8]["outputs"] == {"y": [[16.0, 2.0], [18.0, 2.0]]}
    assert docs[5]["outputs"] == {"y": [[10.0, 11.0]]}


def test_a_poison_row_in_a_merged_call_fails_only_its_message() -> None:
    source, sink, dead = streams(6)
    model = FakeModel()
    model.poison[2] = InvalidInputError("row 2 is bad")
    c = consumer(model, source, sink, dead, batch=16)
    asyncio.run(run_until(c, lambda: len(source.acked()) == 6))
    assert model.rows[0] == 6 and sorted(model.rows[1:]) == [1] * 6  # merged, then one by one
    assert sorted(results(sink.bodies)) == [0, 1, 3, 4, 5]
    assert [orjson.loads(b)["id"] for b in dead.bodies] == [2]


def test_a_transient_failure_of_a_merged_call_retries_the_whole_batch() -> None:
    source, sink, dead = streams(4)
    model = FakeModel()
    model.failures[3] = [UnavailableError("loading")]
    c = consumer(model, source, sink, dead, batch=16)
    stats = asyncio.run(run_until(c, lambda: len(source.acked()) == 4))
    assert model.rows == [4, 4] and stats.retried == 4
    assert sorted(results(sink.bodies)) == [0, 1, 2, 3]


def test_a_registry_hiccup_while_resolving_the_signature_is_retried() -> None:
    source, sink, dead = streams(3)
    model = FakeModel()
    c = consumer(model, source, sink, dead, batch=3)

    async def scenario() -> None:
        task = asyncio.create_task(c.run())
        await until(lambda: len(source.acked()) == 3)
        model.signature_failures.append(UnavailableError("registry database busy"))
        source.append(message(3))
        await until(lambda: len(source.acked()) == 4)
        c.stop()
        await task

    asyncio.run(scenario())
    assert sorted(results(sink.bodies)) == list(range(4)) and dead.bodies == []
    assert c.stats.retried >= 1


class HangingSource:
    """A source whose fetch never returns for the first ``hangs`` calls (like a broker client
    stuck on a lost reply), then answers from ``inner``."""

    def __init__(self, inner: Any, hangs: int) -> None:
        self.name = "hanging"
        self.inner = inner
        self.hangs = hangs
        self.cancelled = 0

    async def fetch(self, max_messages: int, wait_s: float) -> list[Any]:
        if self.hangs > 0:
            self.hangs -= 1
            try:
                await asyncio.Event().wait()  # forever
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return list(await self.inner.fetch(max_messages, wait_s))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_stop_is_not_held_up_by_a_fetch_that_never_returns() -> None:
    async def scenario() -> None:
        source, sink, dead = streams(0)
        hanging = HangingSource(source.source(), hangs=1_000)
        options = StreamOptions(**{**FAST, "fetch_grace_s": 3600.0})
        c = StreamConsumer(FakeModel(), hanging, sink.sink(), dead.sink(), options=options)
        task = asyncio.create_task(c.run())
        await until(lambda: hanging.hangs < 1_000)  # the first fetch is stuck
        c.stop()
        stats = await asyncio.wait_for(task, 30)  # a bound for a broken build, not a sleep
        assert stats.received == 0
        assert hanging.cancelled == 1

    asyncio.run(scenario())


def test_a_fetch_that_overstays_its_grace_is_given_up_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        source, sink, dead = streams(5)
        hanging = HangingSource(source.source(), hangs=2)
        options = StreamOptions(**{**FAST, "fetch_grace_s": 0.01})
        c = StreamConsumer(FakeModel(), hanging, sink.sink(), dead.sink(), options=options)
        await run_until(c, lambda: len(source.acked()) == 5)
        assert (hanging.hangs, hanging.cancelled) == (0, 2)
        assert sorted(results(sink.bodies)) == list(range(5))

    with caplog.at_level(logging.WARNING, logger="modelyard.stream"):
        asyncio.run(scenario())
    assert "no answer within" in caplog.text


def test_fetch_grace_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="fetch_grace_s"):
        StreamOptions(fetch_grace_s=0)
