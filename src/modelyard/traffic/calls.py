"""Asyncio mechanics of the traffic layer: hedged calls and calls with a time limit.

The decisions (whether and when to hedge, how long to wait) come from the pure policies in
:mod:`modelyard.traffic.hedging`; this module only runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def run_hedged(
    call: Callable[[], Awaitable[T]], delay_s: float | None, allow: Callable[[], bool]
) -> T:
    """Run ``call()``; if it has not finished after ``delay_s`` and ``allow()`` agrees, run a
    second copy. The first successful answer wins and the other copy is cancelled; when both
    fail, the first copy's failure is raised. ``delay_s=None`` never hedges."""
    first: asyncio.Future[T] = asyncio.ensure_future(call())
    if delay_s is None:
        return await first
    second: asyncio.Future[T] | None = None
    try:
        done, _ = await asyncio.wait({first}, timeout=delay_s)
        if done or not allow():
            return await first
        second = asyncio.ensure_future(call())
        return await _first_success([first, second])
    finally:
        for task in (first, second):
            if task is not None and not task.done():
                task.cancel()


async def _first_success(tasks: list[asyncio.Future[T]]) -> T:
    """The first successful result of ``tasks``; when all fail, the first task's failure."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        winners = [t for t in tasks if t in done and t.exception() is None]
        if winners:
            return winners[0].result()
    failure = tasks[0].exception()
    assert failure is not None
    raise failure


async def within(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """Await with a time limit (None = none); TimeoutError when it passes."""
    if timeout_s is None:
        return await awaitable
    return await asyncio.wait_for(awaitable, timeout=max(timeout_s, 0.0))
