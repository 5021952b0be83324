"""The model cache's pure decisions, as tables of cases (no event loop, no threads)."""

from __future__ import annotations

import pytest

from modelyard.core.cache_policy import EvictionCandidate, choose_evictions, choose_idle


def cand(
    key: str, size: int, last_used: float, in_flight: int = 0, pinned: bool = False
) -> EvictionCandidate[str]:
    return EvictionCandidate(key, size, last_used, in_flight, pinned)


LRU3 = [cand("a", 40, 1.0), cand("b", 40, 3.0), cand("c", 40, 2.0)]

EVICTION_CASES = [
    # (case, entries, bytes_in_use, budget, incoming, expected)
    ("within budget", LRU3, 120, 200, 0, []),
    ("exactly at budget", LRU3, 120, 120, 0, []),
    ("one over: oldest goes", LRU3, 121, 120, 0, ["a"]),
    ("incoming counts", LRU3, 120, 150, 40, ["a"]),
    ("needs two: oldest first", LRU3, 120, 40, 0, ["a", "c"]),
    ("needs everything", LRU3, 120, 0, 0, ["a", "c", "b"]),
    ("one big victim is enough", [cand("a", 10, 1.0), cand("b", 90, 0.5)], 100, 50, 0, ["b"]),
    ("in flight skipped", [cand("a", 40, 1.0, in_flight=2), cand("b", 40, 2.0)], 80, 50, 0, ["b"]),
    ("pinned skipped", [cand("a", 40, 1.0, pinned=True), cand("b", 40, 2.0)], 80, 50, 0, ["b"]),
    (
        "cannot meet budget: evict what may go, keep the rest",
        [cand("a", 40, 1.0, in_flight=1), cand("b", 20, 2.0), cand("c", 40, 3.0, pinned=True)],
        160,
        50,
        0,
        ["b"],
    ),
    ("nothing evictable", [cand("a", 60, 1.0, pinned=True)], 120, 100, 0, []),
    ("no candidates (only the new entry)", [], 150, 100, 0, []),
    ("ties keep the given order", [cand("x", 10, 5.0), cand("y", 10, 5.0)], 20, 10, 0, ["x"]),
    (
        "zero-byte entries do not help",
        [cand("z", 0, 1.0), cand("a", 30, 2.0)],
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
def test_choose_evictions(
    entries: list[EvictionCandidate[str]],
    bytes_in_use: int,
    budget: int,
    incoming: int,
    expected: list[str],
) -> None:
    assert choose_evictions(entries, bytes_in_use, budget, incoming) == expected


IDLE_CASES = [
    # (case, entries, now, ttl, expected)
    ("nobody idle", [cand("a", 1, 90.0)], 100.0, 30.0, []),
    ("exactly ttl is idle", [cand("a", 1, 70.0)], 100.0, 30.0, ["a"]),
    ("several idle, order kept", [cand("b", 1, 0.0), cand("a", 1, 10.0)], 100.0, 30.0, ["b", "a"]),
    ("in flight never idle", [cand("a", 1, 0.0, in_flight=1)], 100.0, 30.0, []),
    ("pinned never idle", [cand("a", 1, 0.0, pinned=True)], 100.0, 30.0, []),
    ("mixed", [cand("a", 1, 0.0), cand("b", 1, 95.0), cand("c", 1, 1.0)], 100.0, 30.0, ["a", "c"]),
]


@pytest.mark.parametrize(
    ("entries", "now", "ttl", "expected"),
    [case[1:] for case in IDLE_CASES],
    ids=[case[0] for case in IDLE_CASES],
)
def test_choose_idle(
    entries: list[EvictionCandidate[str]], now: float, ttl: float, expected: list[str]
) -> None:
    assert choose_idle(entries, now, ttl) == expected


def test_evictable() -> None:
    assert cand("a", 1, 0.0).evictable
    assert not cand("a", 1, 0.0, in_flight=1).evictable
    assert not cand("a", 1, 0.0, pinned=True).evictable
