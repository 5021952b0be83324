"""One model load, as the model cache runs it on a worker thread: loader -> warm-up -> size.

Kept apart from the cache's bookkeeping (locks, futures, eviction) so each reads on its own.
"""

from __future__ import annotations

from collections.abc import Callable

from modelyard.core.cache_policy import CacheKey
from modelyard.core.clock import Clock
from modelyard.errors import ModelLoadError, ModelTooLargeError, ModelYardError
from modelyard.runtime import Runtime

Loader = Callable[[CacheKey], Runtime]


def load_error(key: CacheKey, step: str, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(f"could not {step} model {key}: {type(exc).__name__}: {exc}")


def build_runtime(
    loader: Loader,
    key: CacheKey,
    *,
    budget: int,
    clock: Clock,
    dispose: Callable[[Runtime], None],
) -> tuple[Runtime, int, float, float]:
    """Load, warm up and size one runtime. Returns (runtime, bytes, load_s, warm_s).

    A runtime that fails warm-up or sizing is handed to ``dispose`` before the error is
    raised; loader errors propagate as they are (the caller wraps foreign ones)."""
    t0 = clock.monotonic()
    runtime = loader(key)
    if not isinstance(runtime, Runtime):
        raise ModelLoadError(f"loader returned {type(runtime).__name__} for {key}, not a Runtime")
    t1 = clock.monotonic()
    try:
        runtime.warmup()
    except BaseException as exc:
        dispose(runtime)
        raise load_error(key, "warm up", exc) from exc
    t2 = clock.monotonic()
    try:
        size = runtime.memory_bytes()
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ModelLoadError(f"memory_bytes() of {key} returned {size!r}, not an int >= 0")
        if size > budget:
            raise ModelTooLargeError(
                f"model {key} needs {size} bytes, more than the model cache's whole "
                f"budget_bytes={budget}"
            )
    except BaseException as exc:
        dispose(runtime)
        if isinstance(exc, ModelYardError):
            raise
        raise load_error(key, "measure", exc) from exc
    return runtime, size, t1 - t0, t2 - t1
