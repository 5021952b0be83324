"""The response cache: outputs of earlier requests, keyed by the version that served them.

The key is (model, version, hash of the canonical inputs and the requested outputs), built by
the pure :func:`input_key` / :func:`cache_key`. Because the served version is part of the key,
a new version (or an alias moved to another one) can never be answered from an entry of the old
one. Entries expire after a TTL and are evicted least recently used first when the byte budget
is exceeded. The cache also remembers, per input, the last good answer it stored (whatever the
version, expired or not, as long as it is still held) for the ``last_good`` fallback step.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.types import Array

ENTRY_OVERHEAD_BYTES = 256
"""Bytes charged per entry on top of its arrays (key, bookkeeping)."""

_LEN = struct.Struct("<Q")


def input_key(inputs: Mapping[str, Array], outputs: Sequence[str] | None) -> bytes:
    """A digest of the canonical request: every input's name, dtype, shape and bytes (in name
    order), and the requested output names (order-free). Equal requests give equal keys."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(inputs):
        arr = np.asarray(inputs[name])
        h.update(_LEN.pack(len(name)) + name.encode())
        h.update(arr.dtype.str.encode() + b"|" + repr(arr.shape).encode())
        if arr.dtype.kind == "O":
            for item in arr.reshape(-1):
                data = item if isinstance(item, bytes) else str(item).encode()
                h.update(_LEN.pack(len(data)) + data)
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    h.update(b"\x00outputs:" + (b"*" if outputs is None else "\x00".join(sorted(outputs)).encode()))
    return h.digest()


CacheKey = tuple[str, str, bytes]
"""(model, version, input key)."""


def cache_key(model: str, version: str, inputs_digest: bytes) -> CacheKey:
    return (model, version, inputs_digest)


def outputs_nbytes(outputs: Mapping[str, Array]) -> int:
    """Bytes an entry holding ``outputs`` is charged."""
    total = ENTRY_OVERHEAD_BYTES
    for array in outputs.values():
        arr = np.asarray(array)
        if arr.dtype.kind == "O":
            total += sum(len(x) if isinstance(x, bytes | str) else 16 for x in arr.reshape(-1))
        else:
            total += arr.nbytes
    return total


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What the cache holds: the outputs, the model version that produced them, and notes
    to repeat in the response parameters (e.g. which cascade stage answered)."""

    model: str
    version: str
    outputs: Mapping[str, Array]
    notes: Mapping[str, str]
    stored_at: float
    nbytes: int


class ResponseCache:
    """TTL + byte-budget LRU, thread-safe. Stored arrays are made read-only (shared by hits)."""

    def __init__(self, *, ttl_s: float, max_bytes: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[CacheKey, CachedAnswer] = OrderedDict()
        self._last_good: dict[bytes, CacheKey] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        """Bytes charged for the entries held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedAnswer | None:
        """The fresh entry for ``key`` (marked recently used), or None."""
        now = self._clock.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry.stored_at >= self.ttl_s:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def last_good(self, digest: bytes) -> CachedAnswer | None:
        """The last answer stored for these inputs, from any version, even past its TTL."""
        with self._lock:
            key = self._last_good.get(digest)
            return None if key is None else self._entries.get(key)

    def put(
        self,
        key: CacheKey,
        outputs: Mapping[str, Array],
        *,
        model: str,
        version: str,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        """Store the ``outputs`` that ``model`` version ``version`` gave for ``key``; an entry
        larger than the whole budget is not kept."""
        size = outputs_nbytes(outputs)
        if size > self.max_bytes:
            return
        frozen: dict[str, Array] = {}
        for name, array in outputs.items():
            arr = np.asarray(array)
            arr.flags.writeable = False
            frozen[name] = arr
        entry = CachedAnswer(
            model, version, frozen, dict(notes or {}), self._clock.monotonic(), size
        )
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = entry
            self._bytes += size
            self._last_good[key[2]] = key
            while self._bytes > self.max_bytes:
                self._evict_oldest()

    def _evict_oldest(self) -> None:
        victim, entry = self._entries.popitem(last=False)
        self._bytes -= entry.nbytes
        if self._last_good.get(victim[2]) == victim:
            del self._last_good[victim[2]]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._last_good.clear()
            self._bytes = 0
