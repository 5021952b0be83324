"""Helpers shared by the built-in runtimes. Imports nothing beyond numpy and the foundation."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from modelyard.errors import InferenceError, InvalidInputError, ModelYardError
from modelyard.types import Array, Datatype, TensorSpec

T = TypeVar("T")

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})


def as_path(obj: object) -> Path | None:
    """``obj`` as a filesystem path when it is a ``str``/``PathLike`` naming an existing file."""
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        return path if path.is_file() else None
    return None


def path_suffix(obj: object) -> str:
    """Lower-case suffix of an existing file named by ``obj`` ('' for anything else)."""
    path = as_path(obj)
    return path.suffix.lower() if path is not None else ""


def copy_file(src: Path, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / name
    shutil.copyfile(src, dest)
    return dest


def module_root(obj: object) -> str:
    """Top-level package of ``obj``'s class (``sklearn``, ``xgboost`` ...)."""
    return type(obj).__module__.partition(".")[0]


def sample_array(sample: Mapping[str, Array] | Array | None) -> Array | None:
    """The single array of a one-input sample (a bare array is accepted too)."""
    if sample is None:
        return None
    if isinstance(sample, np.ndarray):
        return sample
    if len(sample) != 1:
        raise InvalidInputError(
            f"sample: this runtime takes one input tensor, got {len(sample)} ({sorted(sample)})"
        )
    return np.asarray(next(iter(sample.values())))


def tabular_input(n_features: int, sample: Array | None, name: str = "input") -> TensorSpec:
    """The one 2-D input of a tabular model: FP32 when the sample is float32, else FP64."""
    dt = Datatype.FP32 if sample is not None and sample.dtype == np.float32 else Datatype.FP64
    return TensorSpec(name=name, datatype=dt, shape=(-1, n_features))


def label_datatype(classes: Array) -> Datatype:
    """The V2 datatype of a classifier's labels (its ``classes_``)."""
    kind = classes.dtype.kind
    if kind in "iu":
        return Datatype.INT64
    if kind == "b":
        return Datatype.BOOL
    if kind == "f":
        return Datatype.FP64
    return Datatype.BYTES


def to_strings(arr: Array) -> Array:
    """An object array of ``str`` (bytes are decoded as UTF-8), same shape."""
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(arr.shape)


def cast_output(arr: Any, spec: TensorSpec) -> Array:
    """``arr`` (dense) in the datatype the signature promises; BYTES become ``str`` objects."""
    if hasattr(arr, "toarray"):  # scipy sparse matrices, e.g. from a text vectorizer
        arr = arr.toarray()
    out = np.asarray(arr)
    if spec.datatype is Datatype.BYTES:
        return to_strings(out)
    return out.astype(spec.datatype.numpy_dtype, copy=False)


def input_array(inputs: Mapping[str, Array], name: str) -> Array:
    """The tensor named ``name``; a clear error naming it when it is missing."""
    try:
        return inputs[name]
    except KeyError:
        raise InvalidInputError(
            f"input {name!r} is missing (got {', '.join(map(repr, inputs)) or 'no inputs'})"
        ) from None


@contextmanager
def engine_errors(kind: str) -> Iterator[None]:
    """Wrap a foreign engine exception raised while predicting as :class:`InferenceError`."""
    try:
        yield
    except ModelYardError:
        raise
    except Exception as exc:
        raise InferenceError(f"{kind} runtime: {type(exc).__name__}: {exc}") from exc


def first_line(exc: BaseException) -> str:
    """The first line of an engine's error (native libraries append whole stack traces)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def rss_bytes() -> int | None:
    """Resident set size of this process, from ``/proc/self/statm`` (None where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # the layout of glibc's struct mallinfo2
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
        )
    ]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


_MALLINFO2 = _mallinfo2()
# Loads measured one at a time, so that one load's allocations are not counted as another's.
_MEASURE_LOCK = threading.Lock()
_MEASURE_WAIT_S = 10.0
_HEAP_NOISE_BYTES = 256 * 1024


def heap_bytes() -> int | None:
    """Bytes the C allocator has handed out and not taken back (glibc ``mallinfo2``: in-use
    heap chunks + mmapped chunks); None where unavailable. Unlike RSS, reusing freed memory
    does not hide an allocation from it."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks) + int(info.hblkhd)


def measure_load(load: Callable[[], T], floor: int) -> tuple[T, int]:
    """Run ``load`` and return its result with its memory cost in bytes.

    The cost is the larger of this process's RSS growth and its C-heap growth (see
    :func:`heap_bytes`) while ``load`` ran, never less than ``floor`` (the artifact size) nor 1.
    RSS alone under-counts under churn (a load reusing memory an unloaded model freed adds no
    RSS); the heap count misses Python's small-object arenas, RSS does not. Measured loads run
    one at a time in a process (waiting at most ``_MEASURE_WAIT_S`` for the previous one), so
    concurrent loads are not counted twice; inference threads still add a little noise.
    """
    locked = _MEASURE_LOCK.acquire(timeout=_MEASURE_WAIT_S)
    try:
        rss0, heap0 = rss_bytes(), heap_bytes()
        result = load()
        rss1, heap1 = rss_bytes(), heap_bytes()
    finally:
        if locked:
            _MEASURE_LOCK.release()
    rss_delta = rss1 - rss0 if rss0 is not None and rss1 is not None else 0
    heap_delta = heap1 - heap0 if heap0 is not None and heap1 is not None else 0
    if heap_delta < _HEAP_NOISE_BYTES:
        heap_delta = 0  # allocator bookkeeping, not a model: keep small models' sizes stable
    return result, max(rss_delta, heap_delta, floor, 1)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
