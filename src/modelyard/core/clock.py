"""Injected monotonic time: production code takes a :class:`Clock`, tests a :class:`FakeClock`."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic clock (for durations, deadlines, TTLs)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch (for timestamps stored or shown to people)."""
        ...


class SystemClock:
    """The real clocks: ``time.monotonic`` and ``time.time`` themselves (called on every
    request by several observers, where a Python wrapper would cost more than the read)."""

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)


class FakeClock:
    """A clock that moves only when told to. Thread-safe."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wall(self) -> float:
        with self._lock:
            return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


SYSTEM_CLOCK = SystemClock()
