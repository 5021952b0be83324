"""The registry watcher: listeners run when the change counter moves (and once at start),
a failing listener runs again, and the polling loop wakes on its interval or when told."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.core.clock import FakeClock
from modelyard.core.watch import RegistryWatcher
from modelyard.errors import InvalidInputError, UnavailableError
from modelyard.registry import Registry
from tests.unit.registry.fakes import FakeModel

WAIT_S = 10.0


def watcher_for(registry: Registry, interval_s: float = 3600.0) -> RegistryWatcher:
    return RegistryWatcher(registry, interval_s=interval_s, use_notify=True, clock=FakeClock())


def test_listeners_run_first_then_only_on_changes(registry: Registry) -> None:
    watcher = watcher_for(registry)
    seen: list[int] = []

    async def listener(seq: int) -> None:
        seen.append(seq)

    watcher.subscribe(listener)

    async def main() -> list[bool]:
        ran = [await watcher.poll_once(), await watcher.poll_once()]
        registry.push(FakeModel(), name="m")
        ran.append(await watcher.poll_once())
        registry.set_alias("m", "production", 1)
        registry.set_alias("m", "candidate", 1)  # two writes between polls: one call
        ran += [await watcher.poll_once(), await watcher.poll_once()]
        return ran

    assert asyncio.run(main()) == [True, False, True, True, False]
    assert seen == [0, 1, 3]
    assert watcher.seq == 3 and watcher.changes_seen == 3
    assert watcher.last_poll_at == FakeClock().wall()


def test_a_failing_listener_is_retried_and_does_not_stop_the_others(registry: Registry) -> None:
    watcher = watcher_for(registry)
    calls: list[str] = []

    async def failing(seq: int) -> None:
        calls.append(f"fail{seq}")
        if len(calls) == 1:
            raise RuntimeError("boom")

    async def fine(seq: int) -> None:
        calls.append(f"ok{seq}")

    watcher.subscribe(failing)
    watcher.subscribe(fine)

    async def main() -> None:
        await watcher.poll_once()
        await watcher.poll_once()  # no change, but the failure asks for another round
        await watcher.poll_once()

    asyncio.run(main())
    assert calls == ["fail0", "ok0", "fail0", "ok0"]


def test_run_polls_until_cancelled_and_wakes_early(registry: Registry) -> None:
    watcher = watcher_for(registry, interval_s=3600.0)  # only a wake-up can cause a 2nd poll
    polled: asyncio.Queue[int] = asyncio.Queue()

    async def listener(seq: int) -> None:
        polled.put_nowait(seq)

    watcher.subscribe(listener)

    async def main() -> None:
        task = asyncio.create_task(watcher.run())
        assert await asyncio.wait_for(polled.get(), WAIT_S) == 0
        assert watcher.running
        registry.push(FakeModel(), name="m")
        watcher.wake()
        assert await asyncio.wait_for(polled.get(), WAIT_S) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not watcher.running

    asyncio.run(main())


def test_run_keeps_polling_when_the_registry_fails(registry: Registry) -> None:
    watcher = RegistryWatcher(registry, interval_s=0.001, clock=FakeClock())
    calls = 0
    recovered = asyncio.Event()
    real = registry.change_seq

    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise UnavailableError("registry database busy")
        return real()

    async def listener(seq: int) -> None:
        recovered.set()

    watcher.subscribe(listener)

    async def main() -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(registry, "change_seq", flaky)
            task = asyncio.create_task(watcher.run())
            await asyncio.wait_for(recovered.wait(), WAIT_S)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert calls >= 3


def test_sqlite_has_no_notify_listener(registry: Registry) -> None:
    assert watcher_for(registry)._notify_url() is None


def test_interval_must_be_positive(registry: Registry) -> None:
    with pytest.raises(InvalidInputError, match="watch_interval_s"):
        RegistryWatcher(registry, interval_s=0)
