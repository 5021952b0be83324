"""Serving-time drift sketches: per-interval counts of served inputs and outputs, per replica.

The observer part runs on the hot path and only puts ``(time, model, version, inputs, outputs)``
on a bounded queue (when full: drop and count). An aggregator thread takes items off in chunks,
concatenates them per version, and counts them into the bins of the version's reference
(:func:`modelyard.monitoring.drift.reference_stats`); versions without a reference cost one dict
look-up per request. Finished intervals are written to the registry table ``drift_sketches``
(one row per replica x interval x version), where the controller merges them.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.observer import InferEvent, Observer
from modelyard.monitoring import drift
from modelyard.monitoring.drift_reports import write_sketches
from modelyard.registry.registry import Registry
from modelyard.types import Array

log = logging.getLogger("modelyard.drift")

CHUNK = 512  # items taken off the queue and binned together


@dataclass(frozen=True)
class _Feature:
    section: str
    name: str
    tensor: str
    column: int | None
    edges: Array | None  # numeric features
    index: Mapping[str, int] | None  # categorical features: category -> bin (others: last bin)
    size: int


class Sketcher:
    """Counts served data into a reference's bins. Made once per (version, reference)."""

    def __init__(self, reference: Mapping[str, Any]) -> None:
        self.reference_id = drift.reference_id(reference)
        self.features: list[_Feature] = []
        for section in ("inputs", "outputs"):
            for name, ref in reference[section].items():
                size = len(ref["counts"])
                if ref["kind"] == "numeric":
                    edges = np.asarray(ref["edges"], dtype=np.float64)
                    feature = _Feature(
                        section, name, ref["tensor"], ref["column"], edges, None, size
                    )
                else:
                    index = {key: i for i, key in enumerate(ref["categories"])}
                    feature = _Feature(
                        section, name, ref["tensor"], ref["column"], None, index, size
                    )
                self.features.append(feature)

    def empty(self) -> dict[str, Any]:
        """A sketch with every count at zero."""
        sketch: dict[str, Any] = {"reference_id": self.reference_id, "rows": 0}
        sketch["inputs"] = {}
        sketch["outputs"] = {}
        for f in self.features:
            sketch[f.section][f.name] = {"counts": [0] * f.size, "missing": 0}
        return sketch

    def add(
        self, sketch: dict[str, Any], inputs: Mapping[str, Array], outputs: Mapping[str, Array]
    ) -> None:
        """Count the features of served tensors into ``sketch`` (made by :meth:`empty`); the
        caller adds the number of rows to ``sketch["rows"]``."""
        for f in self.features:
            tensor = (inputs if f.section == "inputs" else outputs).get(f.tensor)
            if tensor is None:
                continue
            values = drift.column_values(tensor, f.column)
            if values is None:
                continue
            counts, missing = self._count(f, values)
            have = sketch[f.section][f.name]
            have["counts"] = [a + int(b) for a, b in zip(have["counts"], counts, strict=True)]
            have["missing"] += missing

    @staticmethod
    def _count(f: _Feature, values: Array) -> tuple[list[int], int]:
        if f.edges is not None:
            if values.dtype.kind not in "iufb":
                return [0] * f.size, len(values)
            counts, missing = drift.bin_numeric(values.astype(np.float64, copy=False), f.edges)
            return counts.tolist(), missing
        assert f.index is not None
        found = drift.count_categories(values)
        out = [0] * f.size
        for key, count in found.items():
            out[f.index.get(key, f.size - 1)] += count
        return out, len(values) - sum(found.values())


_Item = tuple[float, str, str, Mapping[str, Array], Mapping[str, Array]]


class DriftAggregator(Observer):
    """Observer + aggregator of drift sketches for one replica.

    ``on_infer`` only queues; :meth:`drain` bins what is queued, :meth:`flush` writes finished
    intervals to the registry. :meth:`start` runs both in a thread; :meth:`close` stops it and
    writes everything, the current interval included (so nothing accepted is lost).
    """

    def __init__(
        self,
        registry: Registry,
        replica: str,
        *,
        interval_s: float = 10.0,
        queue_size: int = 10_000,
        clock: Clock = SYSTEM_CLOCK,
        reference_of: Callable[[str, str], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.registry = registry
        self.replica = replica
        self.interval_s = interval_s
        self.clock = clock
        self.dropped = 0
        #: Called (with the number dropped) on the hot path when the queue is full.
        self.on_drop: Callable[[int], None] | None = None
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._reference_of = reference_of or self._registry_reference
        # (model, version) -> Sketcher, or None when the version has no reference. Read on the
        # hot path without a lock (a dict read is atomic); replaced whole by the aggregator.
        self._sketchers: dict[tuple[str, str], Sketcher | None] = {}
        self._open: dict[tuple[float, str, str], dict[str, Any]] = {}
        self._looked_up_in = -1.0  # the interval in which _sketchers was last emptied
        self._lock = threading.Lock()  # guards _open between drain/flush callers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- hot path -----------------------------------------------------------------------------
    def on_infer(self, event: InferEvent) -> None:
        if event.code != "OK" or event.response is None:
            return
        key = (event.model, event.version)
        if key in self._sketchers and self._sketchers[key] is None:
            return
        try:
            self._queue.put_nowait(
                (self.clock.wall(), key[0], key[1], event.request.inputs, event.response.outputs)
            )
        except queue.Full:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop(1)

    # ---- aggregation --------------------------------------------------------------------------
    def drain(self, first: _Item | None = None) -> int:
        """Bin every queued item (and ``first``) now; returns how many were taken."""
        taken = 0
        while True:
            chunk: list[_Item] = [] if first is None else [first]
            first = None
            while len(chunk) < CHUNK:
                try:
                    chunk.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not chunk:
                return taken
            self._bin(chunk)
            taken += len(chunk)

    def _bin(self, chunk: list[_Item]) -> None:
        groups: dict[tuple[float, str, str], list[_Item]] = {}
        for item in chunk:
            start = math.floor(item[0] / self.interval_s) * self.interval_s
            groups.setdefault((start, item[1], item[2]), []).append(item)
        for (start, model, version), items in groups.items():
            sketcher = self._sketcher(model, version)
            if sketcher is None:
                continue
            merged = _concat(items)
            parts = [merged] if merged is not None else [(i[3], i[4]) for i in items]
            rows = sum(_rows(item[3]) for item in items)
            with self._lock:
                sketch = self._open.get((start, model, version))
                if sketch is None or sketch["reference_id"] != sketcher.reference_id:
                    sketch = self._open[(start, model, version)] = sketcher.empty()
                for inputs, outputs in parts:
                    sketcher.add(sketch, inputs, outputs)
                sketch["rows"] += rows

    def _sketcher(self, model: str, version: str) -> Sketcher | None:
        key = (model, version)
        if key not in self._sketchers:
            sketcher = None
            try:
                reference = self._reference_of(model, version)
                if reference is not None:
                    sketcher = Sketcher(drift.check_reference(reference))
            except Exception as exc:
                log.warning("no drift sketches for %s:%s: %s", model, version, exc)
            self._sketchers = {**self._sketchers, key: sketcher}
        return self._sketchers[key]

    def _registry_reference(self, model: str, version: str) -> Mapping[str, Any] | None:
        if not version.isdigit():
            return None
        found = self.registry.get_version(model, int(version)).metadata.get(drift.REFERENCE_KEY)
        return None if found is None else dict(found)

    def flush(self, *, everything: bool = False) -> int:
        """Write finished intervals (all of them when ``everything``) to the registry; returns
        the number of rows written. On a registry error the sketches are kept for the next try.
        Once per interval, references are looked up afresh, so a new ``drift_reference`` (or
        one added to a version that had none) takes effect."""
        now = self.clock.wall()
        current = math.floor(now / self.interval_s) * self.interval_s
        if current != self._looked_up_in:
            self._sketchers = {}
            self._looked_up_in = current
        with self._lock:
            due = {
                k: v for k, v in self._open.items() if everything or k[0] + self.interval_s <= now
            }
            for k in due:
                del self._open[k]
        if not due:
            return 0
        try:
            write_sketches(self.registry, self.replica, due)
        except Exception:
            log.exception("writing %d drift sketches failed; will retry", len(due))
            with self._lock:
                for k, v in due.items():
                    self._open[k] = _merge(v, self._open.get(k))
            return 0
        return len(due)

    # ---- thread -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelyard-drift", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                first = None
            try:
                self.drain(first)
                self.flush()
            except Exception:
                log.exception("drift aggregation failed")

    def close(self) -> None:
        """Stop the thread, bin what is queued and write every open interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.drain()
        self.flush(everything=True)


def _merge(old: dict[str, Any], new: dict[str, Any] | None) -> dict[str, Any]:
    """``old`` plus ``new`` (same interval and version) when made with the same reference."""
    if new is None or new.get("reference_id") != old.get("reference_id"):
        return old if new is None else new
    return {**drift.merge_sketches([old, new]), "reference_id": old.get("reference_id")}


def _rows(tensors: Mapping[str, Array]) -> int:
    for array in tensors.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


def _concat(items: list[_Item]) -> tuple[dict[str, Array], dict[str, Array]] | None:
    """The inputs and outputs of several requests concatenated along the batch dimension, or
    None when their tensors do not line up (then they are counted one by one)."""
    if len(items) == 1:
        return dict(items[0][3]), dict(items[0][4])
    inputs = _concat_tensors([item[3] for item in items])
    outputs = _concat_tensors([item[4] for item in items])
    if inputs is None or outputs is None:
        return None
    return inputs, outputs


def _concat_tensors(batches: list[Mapping[str, Array]]) -> dict[str, Array] | None:
    merged: dict[str, Array] = {}
    for name in batches[0]:
        arrays = [batch.get(name) for batch in batches]
        present = [a for a in arrays if a is not None and a.ndim > 0]
        if len(present) != len(arrays):
            return None
        try:
            merged[name] = np.concatenate(present, axis=0)
        except ValueError:
            return None
    return merged
