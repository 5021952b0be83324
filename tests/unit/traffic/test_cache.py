"""The response cache: canonical keys, TTL and byte-budget LRU on a fake clock, and through the
dataplane - hits flagged, the served version in the key so a new version is never stale."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelyard.core.clock import FakeClock
from modelyard.traffic.response_cache import (
    ENTRY_OVERHEAD_BYTES,
    ResponseCache,
    cache_key,
    input_key,
    outputs_nbytes,
)
from modelyard.types import Array
from tests.unit.traffic.fakes import FakeInner, RecordingObserver, infer, spec, traffic, x

F32 = np.arange(6, dtype=np.float32).reshape(2, 3)


def key_of(inputs: dict[str, Any], outputs: list[str] | None = None) -> bytes:
    return input_key(inputs, outputs)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ({"x": F32}, {"x": F32.copy()}, True),
        ({"x": F32}, {"x": np.asfortranarray(F32)}, True),  # memory layout does not matter
        ({"x": F32, "z": F32}, {"z": F32, "x": F32}, True),  # nor input order
        ({"x": F32}, {"x": F32.astype(np.float64)}, False),  # dtype does
        ({"x": F32}, {"x": F32.reshape(3, 2)}, False),  # shape does
        ({"x": F32}, {"y": F32}, False),  # names do
        ({"x": F32}, {"x": F32 + 1}, False),  # values do
        (
            {"x": np.array([b"ab", b"c"], dtype=object)},
            {"x": np.array([b"a", b"bc"], dtype=object)},
            False,  # BYTES elements are length-prefixed, not just concatenated
        ),
        (
            {"x": np.array([b"ab"], dtype=object)},
            {"x": np.array([b"ab"], dtype=object)},
            True,
        ),
    ],
)
def test_input_key_is_canonical(a: dict[str, Array], b: dict[str, Array], same: bool) -> None:
    assert (key_of(a) == key_of(b)) is same


@pytest.mark.parametrize(
    ("outputs_a", "outputs_b", "same"),
    [
        (None, None, True),
        (["p", "q"], ["q", "p"], True),
        (None, ["p"], False),
        (["p"], ["q"], False),
    ],
)
def test_input_key_includes_requested_outputs(
    outputs_a: list[str] | None, outputs_b: list[str] | None, same: bool
) -> None:
    assert (key_of({"x": F32}, outputs_a) == key_of({"x": F32}, outputs_b)) is same


def test_version_is_part_of_the_key() -> None:
    digest = key_of({"x": F32})
    assert cache_key("m", "1", digest) != cache_key("m", "2", digest)


def outputs(value: float, n: int = 4) -> dict[str, Array]:
    return {"y": np.full((n,), value, dtype=np.float64)}


def make_cache(clock: FakeClock, ttl_s: float = 10.0, max_bytes: int = 10_000) -> ResponseCache:
    return ResponseCache(ttl_s=ttl_s, max_bytes=max_bytes, clock=clock)


def test_get_returns_a_fresh_entry_until_the_ttl_passes() -> None:
    clock = FakeClock()
    cache = make_cache(clock, ttl_s=10.0)
    key = cache_key("m", "1", b"k")
    cache.put(key, outputs(1.0), model="m", version="1")
    clock.advance(9.9)
    hit = cache.get(key)
    assert hit is not None and hit.outputs["y"].tolist() == [1.0] * 4
    clock.advance(0.1)
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_stored_arrays_are_read_only() -> None:
    cache = make_cache(FakeClock())
    key = cache_key("m", "1", b"k")
    cache.put(key, outputs(1.0), model="m", version="1")
    hit = cache.get(key)
    assert hit is not None and not hit.outputs["y"].flags.writeable


def test_byte_budget_evicts_least_recently_used_first() -> None:
    entry = outputs_nbytes(outputs(0.0))
    assert entry == ENTRY_OVERHEAD_BYTES + 32
    cache = make_cache(FakeClock(), max_bytes=3 * entry)
    keys = [cache_key("m", "1", bytes([i])) for i in range(4)]
    for i in range(3):
        cache.put(keys[i], outputs(i), model="m", version="1")
    assert cache.get(keys[0]) is not None  # 0 is now the most recently used
    cache.put(keys[3], outputs(3.0), model="m", version="1")
    assert cache.get(keys[1]) is None  # 1 was the least recently used
    assert all(cache.get(k) is not None for k in (keys[0], keys[2], keys[3]))
    assert cache.size_bytes == 3 * entry and len(cache) == 3


def test_entry_larger_than_the_budget_is_not_kept() -> None:
    cache = make_cache(FakeClock(), max_bytes=100)
    cache.put(cache_key("m", "1", b"k"), outputs(1.0, n=1000), model="m", version="1")
    assert len(cache) == 0 and cache.size_bytes == 0


def test_replacing_an_entry_keeps_the_byte_count_right() -> None:
    cache = make_cache(FakeClock())
    key = cache_key("m", "1", b"k")
    cache.put(key, outputs(1.0), model="m", version="1")
    cache.put(key, outputs(2.0), model="m", version="1")
    assert len(cache) == 1 and cache.size_bytes == outputs_nbytes(outputs(2.0))


def test_last_good_ignores_ttl_and_follows_the_newest_answer() -> None:
    clock = FakeClock()
    cache = make_cache(clock, ttl_s=1.0)
    cache.put(cache_key("m", "1", b"k"), outputs(1.0), model="m", version="1")
    cache.put(cache_key("m", "2", b"k"), outputs(2.0), model="m", version="2")
    clock.advance(100)
    last = cache.last_good(b"k")
    assert last is not None and last.version == "2"
    assert cache.last_good(b"other") is None


def test_last_good_is_forgotten_with_its_entry() -> None:
    entry = outputs_nbytes(outputs(0.0))
    cache = make_cache(FakeClock(), max_bytes=entry)
    cache.put(cache_key("m", "1", b"a"), outputs(1.0), model="m", version="1")
    cache.put(cache_key("m", "1", b"b"), outputs(2.0), model="m", version="1")
    assert cache.last_good(b"a") is None and cache.last_good(b"b") is not None


# ---- through the dataplane ----------------------------------------------------------------------
def cached_endpoint(inner: FakeInner, clock: FakeClock, observer: RecordingObserver) -> Any:
    return traffic(inner, spec(cache={"ttl_s": 30}), clock=clock, observer=observer)


def test_repeat_request_is_a_flagged_cache_hit() -> None:
    inner = FakeInner()
    inner.add("a", "1", factor=2.0)
    observer = RecordingObserver()
    dp = cached_endpoint(inner, FakeClock(), observer)
    first = infer(dp, inputs=x(5.0))
    second = infer(dp, inputs=x(5.0))
    assert len(inner.calls) == 1
    assert "cache" not in first.parameters
    assert second.parameters == {"route": "main", "answered_by": "a:1", "cache": "hit"}
    assert second.model_version == "1" and second.outputs["y"].tolist() == [[10.0]]
    assert observer.lookups == [("ep", False), ("ep", True)]
    infer(dp, inputs=x(6.0))  # another input: a miss
    assert len(inner.calls) == 2


def test_calls_pin_the_resolved_version() -> None:
    inner = FakeInner()
    inner.add("a", "3")
    dp = cached_endpoint(inner, FakeClock(), RecordingObserver())
    infer(dp)
    assert inner.calls[0].version == "3"  # the version the key names, not the alias


def test_a_new_version_never_serves_a_stale_entry() -> None:
    inner = FakeInner()
    inner.add("a", "1", factor=2.0)
    dp = cached_endpoint(inner, FakeClock(), RecordingObserver())
    assert infer(dp, inputs=x(1.0)).outputs["y"].tolist() == [[2.0]]
    inner.add("a", "2", factor=3.0)  # a new production version
    fresh = infer(dp, inputs=x(1.0))
    assert fresh.model_version == "2" and fresh.outputs["y"].tolist() == [[3.0]]
    assert "cache" not in fresh.parameters


def test_entries_expire_on_the_injected_clock() -> None:
    inner = FakeInner()
    inner.add("a", "1")
    clock = FakeClock()
    dp = cached_endpoint(inner, clock, RecordingObserver())
    infer(dp)
    clock.advance(31)
    assert "cache" not in infer(dp).parameters
    assert len(inner.calls) == 2


def test_nonfinite_answers_are_not_cached() -> None:
    inner = FakeInner()
    inner.add("a", "1")
    dp = cached_endpoint(inner, FakeClock(), RecordingObserver())
    infer(dp, inputs=x(float("nan")))
    infer(dp, inputs=x(float("nan")))
    assert len(inner.calls) == 2


def test_different_requested_outputs_are_different_entries() -> None:
    inner = FakeInner()
    inner.add("a", "1")
    dp = cached_endpoint(inner, FakeClock(), RecordingObserver())
    infer(dp)
    assert "cache" not in infer(dp, outputs=["y"]).parameters
