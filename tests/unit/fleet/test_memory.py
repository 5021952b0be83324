"""Memory accounting that holds under churn: a load is charged for what it allocates even when it
reuses memory an unloaded model freed (RSS alone misses that), loads are measured one at a
time, and the allocator can be told to give freed memory back."""

from __future__ import annotations

import threading

import pytest

from modelyard.core.fleet_wiring import trim_heap, tune_allocator
from modelyard.runtimes import _common
from modelyard.runtimes._common import heap_bytes, measure_load

CHUNK = 100_000  # below glibc's mmap threshold: served from (and freed back to) the heap
N = 400

needs_glibc = pytest.mark.skipif(heap_bytes() is None, reason="needs glibc's mallinfo2")


@needs_glibc
def test_a_load_reusing_freed_heap_memory_is_still_charged() -> None:
    freed = [bytearray(CHUNK) for _ in range(N)]  # an "unloaded model" ...
    above = bytearray(CHUNK)  # (something allocated after it keeps the heap from shrinking)
    del freed  # ... leaves its pages in the heap: the next load reuses them, RSS stays flat
    rss0 = _common.rss_bytes() or 0
    kept, size = measure_load(lambda: [bytearray(CHUNK) for _ in range(N)], floor=1)
    rss_growth = (_common.rss_bytes() or 0) - rss0
    assert rss_growth < 0.5 * CHUNK * N  # what a pure RSS measure would have charged
    assert size >= 0.9 * CHUNK * N
    assert len(kept) == N and len(above) == CHUNK


def test_the_floor_and_small_noise() -> None:
    value, size = measure_load(lambda: "x", floor=12345)
    assert (value, size) == ("x", 12345)
    assert measure_load(lambda: None, floor=0)[1] >= 1


def test_loads_are_measured_one_at_a_time() -> None:
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def slow() -> None:
        order.append("a-start")
        inside.set()
        assert release.wait(10)
        order.append("a-end")

    first = threading.Thread(target=lambda: measure_load(slow, floor=1))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=lambda: measure_load(lambda: order.append("b"), floor=1))
    second.start()
    second.join(0.05)  # b must be waiting for a's measurement to end
    assert order == ["a-start"]
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["a-start", "a-end", "b"]


def test_a_stuck_load_does_not_block_others_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "_MEASURE_WAIT_S", 0.01)
    with _common._MEASURE_LOCK:  # someone else's load never finishes
        assert measure_load(lambda: 1, floor=5) == (1, 5)


@needs_glibc
def test_allocator_tuning_and_trim_are_available_on_glibc() -> None:
    assert tune_allocator() is True
    assert trim_heap() is True
