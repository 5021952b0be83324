"""A process-local stream with consumer groups: the broker contract without a broker.

For tests of the stream consumer and for embedding it in a program that already holds its
messages. It keeps the same promise as the real brokers: a message fetched by a source that is
closed (or dropped, see :meth:`MemorySource.crash`) before acknowledging it is delivered again
to the next fetch of the group.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelyard.jobs.sources import Message


@dataclass
class _Group:
    cursor: int = 0
    redeliver: deque[int] = field(default_factory=deque)
    pending: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)


class MemoryStream:
    """An append-only list of bodies, read by consumer groups."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.bodies: list[bytes] = []
        self._groups: dict[str, _Group] = {}
        self._appended: asyncio.Event | None = None

    def append(self, *bodies: bytes) -> None:
        self.bodies.extend(bodies)
        if self._appended is not None:
            self._appended.set()

    def source(self, group: str = "modelyard") -> MemorySource:
        return MemorySource(self, self._groups.setdefault(group, _Group()))

    def sink(self) -> MemorySink:
        return MemorySink(self)

    def acked(self, group: str = "modelyard") -> set[int]:
        """Positions the group has acknowledged."""
        return set(self._groups.setdefault(group, _Group()).acked)

    async def _wait(self, timeout_s: float) -> None:
        if self._appended is None:
            self._appended = asyncio.Event()
        self._appended.clear()
        try:
            await asyncio.wait_for(self._appended.wait(), timeout=timeout_s)
        except TimeoutError:
            pass


class MemorySource:
    """One member of a consumer group of a :class:`MemoryStream`."""

    def __init__(self, stream: MemoryStream, group: _Group) -> None:
        self.name = f"memory:{stream.name}"
        self._stream = stream
        self._group = group
        self._mine: set[int] = set()
        self.fetches = 0

    async def fetch(self, max_messages: int, wait_s: float) -> list[Message]:
        self.fetches += 1
        out = self._take(max_messages)
        if not out and wait_s > 0:
            await self._stream._wait(wait_s)
            out = self._take(max_messages)
        return out

    def _take(self, limit: int) -> list[Message]:
        group, bodies = self._group, self._stream.bodies
        taken: list[int] = []
        while group.redeliver and len(taken) < limit:
            taken.append(group.redeliver.popleft())
        while group.cursor < len(bodies) and len(taken) < limit:
            taken.append(group.cursor)
            group.cursor += 1
        group.pending.update(taken)
        self._mine.update(taken)
        name = self._stream.name
        return [Message(bodies[i], f"{name}/{i}", i) for i in taken]

    async def ack(self, messages: Sequence[Message]) -> None:
        for message in messages:
            index = int(message.token)
            self._group.pending.discard(index)
            self._mine.discard(index)
            self._group.acked.add(index)

    async def lag(self) -> int | None:
        return len(self._stream.bodies) - len(self._group.acked)

    def crash(self) -> None:
        """Go away without acknowledging: what this member held is delivered again."""
        for index in sorted(self._mine):
            if index in self._group.pending:
                self._group.pending.discard(index)
                self._group.redeliver.append(index)
        self._mine.clear()

    async def close(self) -> None:
        self.crash()


class MemorySink:
    """Appends to a :class:`MemoryStream`; ``fail_next`` makes the next writes raise."""

    def __init__(self, stream: MemoryStream) -> None:
        self.name = f"memory:{stream.name}"
        self.stream = stream
        self.fail_next = 0
        self.writes = 0

    async def write(self, bodies: Sequence[bytes]) -> None:
        self.writes += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError(f"{self.name}: write failed on purpose")
        self.stream.append(*bodies)

    async def close(self) -> None:
        pass
