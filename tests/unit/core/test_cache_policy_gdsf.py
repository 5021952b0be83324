"""GDSF (Greedy-Dual-Size-Frequency), the model cache's default eviction policy: the pure
decisions as tables of cases, the request history, and the policy seen through a ModelCache
(FakeClock, fake runtimes whose load seconds and sizes the test chooses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.core.cache_policy import (
    GDSF_COST_FLOOR_S,
    POLICIES,
    EvictionCandidate,
    RequestHistory,
    check_policy,
    choose_evictions,
    gdsf_clock_after,
    gdsf_priority,
)
from modelyard.core.model_cache import CacheKey, ModelCache
from modelyard.errors import InvalidInputError
from modelyard.runtime import Runtime

from .cache_fakes import FakeLoader, FakeRuntime, MakeCache, cache_factory


def cand(
    key: str,
    size: int,
    priority: float,
    last_used: float = 0.0,
    in_flight: int = 0,
    pinned: bool = False,
) -> EvictionCandidate[str]:
    return EvictionCandidate(key, size, last_used, in_flight, pinned, priority)


# ---- the priority -------------------------------------------------------------------------------
PRIORITY_CASES = [
    # (case, clock, frequency, cost_s, size, expected)
    ("F x C / S", 0.0, 4.0, 0.5, 8, 0.25),
    ("the clock is added", 2.0, 4.0, 0.5, 8, 2.25),
    ("more requests, higher", 0.0, 8.0, 0.5, 8, 0.5),
    ("costlier reload, higher", 0.0, 4.0, 1.0, 8, 0.5),
    ("bigger, lower", 0.0, 4.0, 0.5, 16, 0.125),
    ("no requests yet (preload) counts as one", 0.0, 0.0, 0.5, 1, 0.5),
    ("fractional (decayed) counts below one count as one", 0.0, 0.5, 0.5, 1, 0.5),
    ("a free load costs the floor", 0.0, 1.0, 0.0, 1, GDSF_COST_FLOOR_S),
    ("zero bytes count as one", 0.0, 1.0, 0.5, 0, 0.5),
]


@pytest.mark.parametrize(
    ("clock", "frequency", "cost_s", "size", "expected"),
    [case[1:] for case in PRIORITY_CASES],
    ids=[case[0] for case in PRIORITY_CASES],
)
def test_gdsf_priority(
    clock: float, frequency: float, cost_s: float, size: int, expected: float
) -> None:
    assert gdsf_priority(clock, frequency, cost_s, size) == expected


# ---- which entries go ---------------------------------------------------------------------------
THREE = [cand("a", 40, 3.0, last_used=1.0), cand("b", 40, 1.0, last_used=3.0), cand("c", 40, 2.0)]

EVICTION_CASES = [
    # (case, entries, bytes_in_use, budget, incoming, expected)
    ("within budget", THREE, 120, 200, 0, []),
    ("exactly at budget", THREE, 120, 120, 0, []),
    ("one over: lowest priority goes, not the oldest", THREE, 121, 120, 0, ["b"]),
    ("incoming counts", THREE, 120, 150, 40, ["b"]),
    ("needs two: lowest first", THREE, 120, 40, 0, ["b", "c"]),
    ("needs everything", THREE, 120, 0, 0, ["b", "c", "a"]),
    (
        "equal priorities: least recently used first",
        [cand("x", 10, 1.0, last_used=5.0), cand("y", 10, 1.0, last_used=2.0)],
        20,
        10,
        0,
        ["y"],
    ),
    (
        "full ties keep the given order",
        [cand("x", 10, 1.0, last_used=5.0), cand("y", 10, 1.0, last_used=5.0)],
        20,
        10,
        0,
        ["x"],
    ),
    (
        "a big low-value entry goes before many small valuable ones",
        [cand(f"s{i}", 10, 5.0) for i in range(5)] + [cand("big", 50, 0.5, last_used=9.0)],
        100,
        60,
        0,
        ["big"],
    ),
    (
        "in flight skipped",
        [cand("a", 40, 0.1, in_flight=2), cand("b", 40, 9.0)],
        80,
        50,
        0,
        ["b"],
    ),
    ("pinned skipped", [cand("a", 40, 0.1, pinned=True), cand("b", 40, 9.0)], 80, 50, 0, ["b"]),
    (
        "cannot meet budget: evict what may go, keep the rest",
        [cand("a", 40, 0.1, in_flight=1), cand("b", 20, 5.0), cand("c", 40, 0.2, pinned=True)],
        160,
        50,
        0,
        ["b"],
    ),
    ("nothing evictable", [cand("a", 60, 1.0, pinned=True)], 120, 100, 0, []),
    ("no candidates (only the new entry)", [], 150, 100, 0, []),
    (
        "zero-byte entries do not help",
        [cand("z", 0, 0.5), cand("a", 30, 1.0)],
        30,
        10,
        0,
        ["z", "a"],
    ),
]


@pytest.mark.parametrize(
    ("entries", "bytes_in_use", "budget", "incoming", "expected"),
    [case[1:] for case in EVICTION_CASES],
    ids=[case[0] for case in EVICTION_CASES],
)
def test_choose_evictions_gdsf(
    entries: list[EvictionCandidate[str]],
    bytes_in_use: int,
    budget: int,
    incoming: int,
    expected: list[str],
) -> None:
    assert choose_evictions(entries, bytes_in_use, budget, incoming, policy="gdsf") == expected


def test_lru_ignores_priorities() -> None:
    assert choose_evictions(THREE, 121, 120, policy="lru") == ["c"]  # last_used 0.0 is oldest
    assert choose_evictions(THREE, 121, 120) == ["c"]  # lru stays the function's default


CLOCK_CASES = [
    # (case, clock, entries, victims, expected)
    ("no victims: unchanged", 1.0, THREE, [], 1.0),
    ("one victim: its priority", 0.5, THREE, ["b"], 1.0),
    ("several: the highest of them", 0.5, THREE, ["b", "c"], 2.0),
    ("never moves back", 2.5, THREE, ["b"], 2.5),
    ("keys that are not candidates are ignored", 0.0, THREE, ["zzz"], 0.0),
]


@pytest.mark.parametrize(
    ("clock", "entries", "victims", "expected"),
    [case[1:] for case in CLOCK_CASES],
    ids=[case[0] for case in CLOCK_CASES],
)
def test_gdsf_clock_after(
    clock: float, entries: list[EvictionCandidate[str]], victims: list[str], expected: float
) -> None:
    assert gdsf_clock_after(clock, entries, victims) == expected


@pytest.mark.parametrize("policy", ["", "LRU", "lfu", "gdsf "])
def test_unknown_policies_are_refused_by_name(policy: str) -> None:
    with pytest.raises(InvalidInputError, match="cache policy"):
        check_policy(policy)
    with pytest.raises(InvalidInputError, match="cache policy"):
        choose_evictions(THREE, 200, 100, policy=policy)
    with pytest.raises(InvalidInputError, match="cache policy"):
        ModelCache(FakeLoader(), budget_bytes=100, policy=policy)


def test_known_policies() -> None:
    assert POLICIES == ("lru", "gdsf")
    assert [check_policy(p) for p in POLICIES] == list(POLICIES)


# ---- the request history ------------------------------------------------------------------------
def test_history_counts_requests_per_key() -> None:
    history: RequestHistory[str] = RequestHistory(window=100)
    assert [history.request("a") for _ in range(3)] == [1.0, 2.0, 3.0]
    assert history.request("b") == 1.0
    assert (history.frequency("a"), history.frequency("b"), history.frequency("c")) == (3, 1, 0)


def test_history_halves_every_window_and_forgets_keys_below_one() -> None:
    history: RequestHistory[str] = RequestHistory(window=8)
    for key in "aaaaaab":  # 7 requests: no halving yet
        history.request(key)
    assert (history.frequency("a"), history.frequency("b"), len(history)) == (6, 1, 2)
    assert history.request("c") == 1.0  # the 8th: the count is returned before the halving
    assert (history.frequency("a"), history.frequency("b"), history.frequency("c")) == (3, 0, 0)
    assert len(history) == 1  # b and c fell below one and were forgotten


def test_history_stays_bounded_under_a_scan_of_distinct_keys() -> None:
    history: RequestHistory[int] = RequestHistory(window=50)
    for key in range(10_000):
        history.request(key)
    assert len(history) <= 2 * history.window


def test_history_keeps_the_cheapest_load() -> None:
    history: RequestHistory[str] = RequestHistory()
    assert history.load_cost("a", 0.5) == 0.5
    assert history.load_cost("a", 2.0) == 0.5  # a slower reload (busy process) does not count
    assert history.load_cost("a", 0.25) == 0.25


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
def test_history_window_must_be_a_positive_int(window: object) -> None:
    with pytest.raises(InvalidInputError, match="frequency window"):
        RequestHistory(window=window)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="frequency window"):
        ModelCache(FakeLoader(), budget_bytes=100, frequency_window=window)  # type: ignore[arg-type]


# ---- through the model cache --------------------------------------------------------------------
@pytest.fixture
def make_cache() -> Iterator[MakeCache]:
    yield from cache_factory()


def key(name: str) -> CacheKey:
    return CacheKey(name, 1)


def loaded(cache: ModelCache) -> set[str]:
    return {k.model for k in (e.key for e in cache.entries()) if cache.is_loaded(k)}


def test_default_policy_is_gdsf(make_cache: MakeCache) -> None:
    cache, _, _ = make_cache()
    assert cache.policy == "gdsf"
    assert make_cache(policy="lru")[0].policy == "lru"


@pytest.mark.parametrize(("policy", "evicted"), [("gdsf", "big"), ("lru", "small")])
def test_a_popular_small_model_outlives_a_big_rare_one(
    make_cache: MakeCache, policy: str, evicted: str
) -> None:
    cache, _, clock = make_cache({"small": 10, "big": 60, "new": 40}, budget=100, policy=policy)
    for _ in range(5):
        cache.get_sync(key("small"))
        clock.advance(1)
    cache.get_sync(key("big"))
    clock.advance(1)
    cache.get_sync(key("new"))  # 110 bytes > 100
    assert loaded(cache) == {"small", "big", "new"} - {evicted}


def test_the_cheaper_reload_is_evicted_first(make_cache: MakeCache) -> None:
    cache, loader, clock = make_cache(budget=20, policy="gdsf")
    costs = {"cheap": 0.5, "dear": 2.0, "new": 1.0}

    def make(k: CacheKey) -> Runtime:
        clock.advance(costs[k.model])
        return FakeRuntime(k, 10)

    loader.make = make
    cache.get_sync(key("dear"))
    cache.get_sync(key("cheap"))  # more recent than "dear": LRU would evict "dear"
    cache.get_sync(key("new"))
    assert loaded(cache) == {"dear", "new"}
    assert [e.load_seconds for e in cache.entries() if e.key == key("dear")] == [2.0]


def test_popularity_survives_an_eviction(make_cache: MakeCache) -> None:
    cache, _, clock = make_cache({"p": 16, "x": 16, "y": 16}, budget=32, policy="gdsf")
    for _ in range(4):  # p: 4 requests
        cache.get_sync(key("p"))
    cache.get_sync(key("x"))
    cache.get_sync(key("y"))  # evicts x (1 request), not p
    assert loaded(cache) == {"p", "y"}
    cache.pin(key("y"))
    cache.get_sync(key("x"))  # p is the only evictable entry: it goes
    cache.unpin(key("y"))
    assert loaded(cache) == {"x", "y"}
    cache.get_sync(key("p"))  # p comes back with 5 requests, x and y have 2 and 1
    cache.get_sync(key("x"))
    assert loaded(cache) == {"p", "x"}
    clock.advance(1)
    cache.get_sync(key("y"))  # y (2 requests) cannot push out p (5): x (3) goes
    assert loaded(cache) == {"p", "y"}


def test_a_formerly_popular_model_ages_out(make_cache: MakeCache) -> None:
    # Sizes and costs are powers of two, so the priorities below are exact.
    cache, loader, clock = make_cache(budget=24, policy="gdsf")
    loader.default_size, loader.load_s = 8, 1.0  # room for 3; every load "takes" 1 s
    for _ in range(4):
        cache.get_sync(key("old"))  # priority 0 + 4 x 1 / 8 = 0.5
    for i in range(8):  # each new model: 1 request, priority L + 1/8; L climbs with evictions
        clock.advance(1)
        cache.get_sync(key(f"n{i}"))
    assert "old" in loaded(cache)  # L has reached 0.375: old is still worth more
    clock.advance(1)
    cache.get_sync(key("n8"))  # L + 1/8 = 0.5 ties old's priority; old is the least recent
    # Plain LFU would keep "old" forever; GDSF's clock caught up with its priority.
    assert "old" not in loaded(cache)
    assert cache.stats.evictions == 7


def test_requests_joining_a_load_and_hits_both_count(make_cache: MakeCache) -> None:
    cache, _, _ = make_cache({"a": 10, "b": 10, "c": 10}, budget=20, policy="gdsf")
    cache.get_sync(key("a"))
    cache.get_sync(key("b"))
    cache.get_sync(key("b"))
    cache.get_sync(key("a"))
    cache.get_sync(key("a"))
    cache.get_sync(key("c"))  # a has 3 requests, b 2: b goes
    assert loaded(cache) == {"a", "c"}
