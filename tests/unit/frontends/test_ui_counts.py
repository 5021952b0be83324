"""The dashboard across workers, without sockets: each worker's raw counts of a window, and their
sum, which must read exactly as one LiveSeries that saw every request (the oracle)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from typing import Any

import pytest

from modelyard.core.clock import FakeClock
from modelyard.frontends import ui_routes
from modelyard.frontends.rest import create_rest_app
from modelyard.frontends.ui_counts import (
    RECENT_S,
    Want,
    Window,
    WindowCounts,
    clamp_window,
    counts_from_json,
    counts_to_json,
    merge_counts,
    render,
    request_from_json,
    request_to_json,
    route_counts,
    window_from_json,
)
from modelyard.frontends.ui_series import SUMMARY, FleetCounts, LiveSeries, fleet_timeseries
from modelyard.traffic.stats import bucket_of, bucket_upper
from tests.unit.frontends.conftest import Client, make_settings
from tests.unit.frontends.fakes import FakeDataPlane
from tests.unit.frontends.test_ui_api import event

WALL = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1000.0, wall_start=WALL)


class FakePeers:
    """Other workers in process, through the wire form both ways. ``silent`` ones never answer;
    ``once`` ones answer the first question only."""

    def __init__(
        self, peers: dict[str, LiveSeries], *, silent: Sequence[str] = (), once: Sequence[str] = ()
    ) -> None:
        self.peers = peers
        self.silent = set(silent)
        self.once = set(once)
        self.asked: list[tuple[Want, list[str]]] = []

    async def ask(
        self, window: Window, want: Want, among: Collection[str] | None = None
    ) -> dict[str, WindowCounts | None]:
        names = list(self.peers) if among is None else list(among)
        first = not self.asked
        self.asked.append((want, names))
        request = json.loads(json.dumps(request_to_json(window, want)))
        out: dict[str, WindowCounts | None] = {}
        for name in names:
            if name in self.silent or (name in self.once and not first):
                out[name] = None
                continue
            live = self.peers[name]
            asked_window, asked = request_from_json(request, max_seconds=2 * live.history_s)
            out[name] = wire(live.counts(asked_window, asked), window)
        await asyncio.sleep(0)
        return out


def fleet_doc(
    live: LiveSeries, peers: FakePeers | None, minutes: int, step: int | None, limit: int
) -> tuple[dict[str, Any], FleetCounts]:
    """What ``live`` answers a timeseries poll, asking ``peers``."""
    window = live.window(minutes, step, clamp=False)
    fleet = asyncio.run(fleet_timeseries(live, window, limit, peers))
    offset = live.clock.wall() - live.clock.monotonic()
    return render(fleet.counts, limit, now=live.clock.wall(), offset=offset), fleet


def merged_doc(
    workers: Sequence[LiveSeries], minutes: int, step: int | None, limit: int
) -> dict[str, Any]:
    """What the first of ``workers`` answers when all the others answer it."""
    peers = FakePeers({str(i): w for i, w in enumerate(workers[1:], start=1)})
    doc, fleet = fleet_doc(workers[0], peers, minutes, step, limit)
    assert (fleet.answered, fleet.asked) == (len(workers), len(workers))
    return doc


def alone_doc(live: LiveSeries, minutes: int, step: int | None, limit: int) -> dict[str, Any]:
    doc = live.snapshot(live.window(minutes, step), limit)
    del doc["pid"]
    return doc


def wire(counts: WindowCounts, window: Window) -> WindowCounts:
    return counts_from_json(json.loads(json.dumps(counts_to_json(counts))), window)


def feed(live: LiveSeries, oracle: Sequence[LiveSeries], *events: Any) -> None:
    for e in events:
        live.on_infer(e)
        for o in oracle:
            o.on_infer(e)


def test_the_sum_of_three_workers_reads_as_one_process_that_saw_everything(
    clock: FakeClock,
) -> None:
    a, everything = LiveSeries(clock=clock), LiveSeries(clock=clock)  # second 1000
    workers: dict[LiveSeries, list[LiveSeries]] = {a: [everything]}
    since_b = LiveSeries(clock=clock)  # the oracle without a: made when b starts
    for second in range(200):
        if second == 40:  # b starts 40 s after a, c 70.5 s after a
            b, since_b = LiveSeries(clock=clock), LiveSeries(clock=clock)
            workers[b] = [everything, since_b]
        if second == 70:
            clock.advance(0.5)
            c = LiveSeries(clock=clock)
            workers[c] = [everything, since_b]
            clock.advance(-0.5)
        for k, (worker, oracle) in enumerate(workers.items()):
            for i in range((second + k) % (3 + k)):
                e = event(
                    f"m{(second + i) % 4}",
                    code="INTERNAL" if (second * 7 + i) % 11 == 0 else "OK",
                    latency_s=0.0005 * (1 + (second * 13 + i * 5) % 40),
                    endpoint="ab" if i % 2 else None,
                    route="r1" if second % 3 else "r2",
                )
                feed(worker, oracle, e)
        clock.advance(1)
    clock.advance(0.3)
    assert (a.started, b.started, c.started) == (1000, 1040, 1070)

    for minutes, step, limit in ((5, None, 12), (1, 1, 2), (15, 3, 3), (4, 7, 1), (2, 60, 5)):
        expected = alone_doc(everything, minutes, step, limit)
        assert merged_doc([a, b, c], minutes, step, limit) == expected, (minutes, step)
        assert merged_doc([b, c, a], minutes, step, limit) == expected  # whoever answers
        assert fleet_doc(everything, None, minutes, step, limit)[0] == expected  # alone
        window = a.window(minutes, step, clamp=False)  # the raw sums too, histograms and all
        merged = merge_counts(window, [w.counts(window) for w in (a, b, c)])
        assert merged == everything.counts(everything.window(minutes, step))
        # workers of different ages: without a, the window starts at b's start
        assert merged_doc([c, b], minutes, step, limit) == alone_doc(since_b, minutes, step, limit)

    split = a.split_window()
    merged = merge_counts(split, [w.counts(split) for w in (a, b, c)])
    assert route_counts(merged) == everything.route_counts() != {}
    assert sum(everything.route_counts()["ab"].values()) > 0


def test_a_peer_that_answers_only_the_first_question_is_left_out(clock: FakeClock) -> None:
    mine, steady, flaky, without_flaky = (LiveSeries(clock=clock) for _ in range(4))
    feed(mine, [without_flaky], event("a"), event("b"))
    feed(steady, [without_flaky], event("a"))
    for _ in range(5):
        flaky.on_infer(event("c"))  # would be the busiest model
    clock.advance(2)
    peers = FakePeers({"steady": steady, "flaky": flaky}, once=["flaky"])
    doc, fleet = fleet_doc(mine, peers, 1, 1, limit=2)
    assert (fleet.answered, fleet.asked) == (2, 3)
    assert doc["total"]["requests"] == 3 and doc["models_with_traffic"] == 2
    assert [m["model"] for m in doc["models"]] == ["a"]  # b's series was not asked for
    assert peers.asked[1] == (Want(models=["c", "a"]), ["steady", "flaky"])


def test_no_traffic_asks_once(clock: FakeClock) -> None:
    mine, peer = LiveSeries(clock=clock), LiveSeries(clock=clock)
    clock.advance(5)
    peers = FakePeers({"peer": peer})
    doc, fleet = fleet_doc(mine, peers, 1, 1, limit=2)
    assert doc["models"] == [] and doc["total"]["requests"] == 0
    assert (fleet.answered, fleet.asked) == (2, 2) and len(peers.asked) == 1


def test_the_busiest_models_are_chosen_on_the_sum(clock: FakeClock) -> None:
    workers = [LiveSeries(clock=clock) for _ in range(3)]
    for live in workers:
        for _ in range(3):
            live.on_infer(event("spread"))  # 3 on each worker: 9 in all
    for _ in range(5):
        workers[0].on_infer(event("lumpy"))  # the busiest on worker 0 alone
    clock.advance(2)
    alone = workers[0].snapshot(workers[0].window(1, 1), limit=1)
    assert [m["model"] for m in alone["models"]] == ["lumpy"]
    doc = merged_doc(workers, 1, 1, limit=1)
    assert [(m["model"], m["requests"]) for m in doc["models"]] == [("spread", 9)]
    assert doc["models_with_traffic"] == 2 and doc["total"]["requests"] == 14


def test_p99_comes_from_the_summed_histogram_not_from_each_workers_p99(clock: FakeClock) -> None:
    slow, fast = LiveSeries(clock=clock), LiveSeries(clock=clock)
    for _ in range(98):
        slow.on_infer(event(latency_s=0.001))
    for _ in range(2):
        slow.on_infer(event(latency_s=1.0))  # 2 %: this worker's own p99 is 1 s
    for _ in range(100):
        fast.on_infer(event(latency_s=0.001))
    clock.advance(1)
    assert slow.snapshot(slow.window(1, 1), 1)["total"]["p99_s"] == [bucket_upper(bucket_of(1.0))]
    doc = merged_doc([slow, fast], 1, 1, limit=1)
    # 200 requests, 2 of them slow: the 198th fastest (rank ceil(0.99 * 200)) took 1 ms
    assert doc["total"]["p99_s"] == [bucket_upper(bucket_of(0.001))]
    assert doc["models"][0]["recent"]["p99_s"] == bucket_upper(bucket_of(0.001))


def test_a_younger_worker_counts_zero_before_it_started(clock: FakeClock) -> None:
    old = LiveSeries(clock=clock)  # second 1000
    clock.advance(3)
    old.on_infer(event(code="INTERNAL"))  # second 1003
    clock.advance(97)
    young = LiveSeries(clock=clock)  # second 1100
    young.on_infer(event())
    young.on_infer(event())
    clock.advance(1.5)  # now 1101.5: seconds 1000..1100 are complete

    doc = merged_doc([young, old], 5, 1, limit=5)
    assert (doc["points"], doc["t0"]) == (101, WALL)  # from the older worker's start
    rps = doc["total"]["rps"]
    assert rps[3] == 1.0 and rps[100] == 2.0 and sum(rps) == 3.0  # zeros, not gaps
    assert doc["total"]["error_rate"][3] == 1.0 and doc["total"]["error_rate"][100] == 0.0
    assert doc["total"]["recent"]["rps"] == 0.2  # the last 10 s hold the young one's 2
    alone = merged_doc([young], 5, 1, limit=5)
    assert (alone["points"], alone["t0"]) == (1, WALL + 100)


def test_a_fleet_younger_than_the_recent_span(clock: FakeClock) -> None:
    a, everything = LiveSeries(clock=clock), LiveSeries(clock=clock)
    clock.advance(2)
    b = LiveSeries(clock=clock)
    feed(a, [everything], event(), event(latency_s=0.3))
    clock.advance(1)
    feed(b, [everything], event(code="INTERNAL"))
    clock.advance(3.2)  # 6 s old in all, less than RECENT_S
    assert merged_doc([b, a], 5, None, 3) == alone_doc(everything, 5, None, 3)
    assert merged_doc([b, a], 5, None, 3)["total"]["recent"]["rps"] == 0.5  # 3 over 6 s


def test_clamping_keeps_whole_steps_and_at_least_one() -> None:
    window = Window(first=900, step_s=4, points=25)  # seconds 900..999
    assert clamp_window(window, 800) == window
    assert clamp_window(window, 950) == Window(948, 4, 13)  # 950 lies in the step from 948
    assert clamp_window(window, 999) == Window(996, 4, 1)
    assert clamp_window(window, 1002) == Window(996, 4, 1)  # started in the running step


def test_counts_of_other_windows_are_not_merged(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    clock.advance(10)
    one, other = live.window(1, 1), live.window(1, 2)
    with pytest.raises(ValueError, match="cannot be merged"):
        merge_counts(one, [live.counts(one), live.counts(other)])


GOOD_WINDOW = {"first": 1000, "step_s": 2, "points": 30}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [1000, 2, 30],
        {"first": 1000, "step_s": 2},
        {**GOOD_WINDOW, "extra": 1},
        {**GOOD_WINDOW, "step_s": 0},
        {**GOOD_WINDOW, "points": 0},
        {**GOOD_WINDOW, "points": 10**9},  # far more seconds than kept
        {**GOOD_WINDOW, "step_s": 2.0},
        {**GOOD_WINDOW, "first": True},
        {**GOOD_WINDOW, "first": "1000"},
    ],
)
def test_a_window_asked_for_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError):
        window_from_json(bad, max_seconds=900)


def test_a_window_asked_for_round_trips() -> None:
    assert window_from_json(GOOD_WINDOW, max_seconds=900) == Window(1000, 2, 30)


GOOD_REQUEST = {"window": GOOD_WINDOW, "model_requests": True, "models": ["a"], "routes": False}


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {**GOOD_REQUEST, "extra": 1},
        {k: v for k, v in GOOD_REQUEST.items() if k != "routes"},
        {**GOOD_REQUEST, "window": {**GOOD_WINDOW, "points": 0}},
        {**GOOD_REQUEST, "model_requests": 1},
        {**GOOD_REQUEST, "routes": "yes"},
        {**GOOD_REQUEST, "models": "a"},
        {**GOOD_REQUEST, "models": [1]},
        {**GOOD_REQUEST, "models": ["x" * 129]},
        {**GOOD_REQUEST, "models": [f"m{i}" for i in range(101)]},  # more than the page shows
    ],
)
def test_a_request_is_checked(bad: Any) -> None:
    with pytest.raises(ValueError):
        request_from_json(bad, max_seconds=900)


def test_a_request_round_trips() -> None:
    want = Want(model_requests=True, models=("b", "a"), routes=True)
    window, back = request_from_json(request_to_json(Window(1000, 2, 30), want), max_seconds=900)
    assert window == Window(1000, 2, 30)
    assert (back.model_requests, set(back.models or ()), back.routes) == (True, {"a", "b"}, True)
    with pytest.raises(ValueError, match="names the models"):
        request_to_json(window, Want(models=None))  # "every model" is not sent


def counts_doc(clock: FakeClock) -> tuple[dict[str, Any], Window]:
    live = LiveSeries(clock=clock)
    live.on_infer(event("m", endpoint="ab", route="a"))
    clock.advance(3)
    window = live.window(1, 1)
    return json.loads(json.dumps(counts_to_json(live.counts(window)))), window


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((), []),
        (("window", "points"), 7),  # an answer for another window
        (("started",), "1000"),
        (("total",), []),
        (("total", "points"), {"0": [1, 0, []]}),
        (("total", "points", 0), [0, 1, 0]),  # a point is [k, requests, errors, latency]
        (("total", "points", 0, 0), 3),  # no point 3 in a 3-point window
        (("total", "points", 0, 1), -1),
        (("total", "points", 0, 3), [[10**6, 1]]),  # no such latency bucket
        (("total", "tail", 0, 0), 900),  # not one of the last RECENT_S seconds
        (("models",), {"m": {}}),
        (("models", 0, 0), 5),  # a model name is a string
        (("routes", 0), ["ab", {}]),
    ],
)
def test_a_peers_answer_is_checked(clock: FakeClock, path: tuple[Any, ...], value: Any) -> None:
    doc, window = counts_doc(clock)
    counts_from_json(doc, window)  # the untouched answer is fine
    if path:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    else:
        doc = value
    with pytest.raises(ValueError):
        counts_from_json(doc, window)


def test_the_tail_covers_the_recent_seconds(clock: FakeClock) -> None:
    live = LiveSeries(clock=clock)
    clock.advance(100)
    for _ in range(3 * RECENT_S):
        live.on_infer(event())
        clock.advance(1)
    window = live.window(1, 7)
    counts = live.counts(window)
    assert sorted(counts.total.tail) == list(range(window.end - RECENT_S, window.end))


# ---- the API, with peers that answer (or not) -------------------------------------------------
def test_the_timeseries_api_adds_the_peers_that_answer(clock: FakeClock) -> None:
    mine, peer, other, everything = (LiveSeries(clock=clock) for _ in range(4))
    feed(mine, [everything], event("a"), event("b", code="INTERNAL"))
    feed(peer, [everything], event("a"), event("a", latency_s=2.0))
    other.on_infer(event("c"))  # does not answer: not counted
    clock.advance(2)
    peers = FakePeers({"peer": peer, "other": other}, silent=["other"])

    async def overview() -> dict[str, Any]:
        return {}

    routes = ui_routes.ui_routes(overview, mine, peers)
    client = Client(create_rest_app(FakeDataPlane(), make_settings(), extra_routes=routes))
    doc = client.get(f"{ui_routes.TIMESERIES_PATH}?minutes=1&step=1&limit=5").json()
    assert doc["workers"] == {"answered": 2, "asked": 3}
    assert [(want, among) for want, among in peers.asked] == [
        (SUMMARY, ["peer", "other"]),  # everyone: the total and requests per model
        (Want(models=["a", "b"]), ["peer"]),  # those that answered: the busiest models' series
    ]
    expected = alone_doc(everything, 1, 1, 5)
    assert {k: v for k, v in doc.items() if k not in ("pid", "workers", "minutes", "now")} == {
        k: v for k, v in expected.items() if k != "now"
    }
    assert {m["model"]: m["requests"] for m in doc["models"]} == {"a": 3, "b": 1}
