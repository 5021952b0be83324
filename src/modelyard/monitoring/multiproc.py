"""prometheus-client's multiprocess mode for ``serve --workers N``, without importing it early.

prometheus-client picks how metric values are stored (in memory, or in per-process mmap files
that any worker can aggregate) when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``. So
the supervisor prepares a fresh directory and each worker sets the variable before anything
imports prometheus-client; this module imports it only inside functions for that reason.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from modelyard.errors import FailedPreconditionError
from modelyard.settings import export_to_environment

log = logging.getLogger("modelyard.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The directory :func:`enable` put this process's metric files in (None: not yet).
_enabled: str | None = None


def prepare_dir(path: str | None) -> tuple[str, bool]:
    """Create (or empty) the directory the workers' metric files go to.

    Returns ``(directory, owned)``: ``owned`` is True for a fresh temporary directory that the
    caller removes with :func:`remove_dir` at exit. A given directory is kept but emptied of
    old ``*.db`` files, whose counters would otherwise be added to this run's."""
    if path is None:
        return tempfile.mkdtemp(prefix="modelyard-metrics-"), True
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    except OSError as exc:
        raise FailedPreconditionError(
            f"metrics_dir {path!r} cannot be used as the metrics directory: {exc}"
        ) from exc
    return str(directory), False


def remove_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def enable(path: str, inherited: str | None = None) -> None:
    """Put this process in multiprocess mode with files in ``path``. Call it before anything
    imports prometheus_client (the worker's entry point does); calling it later with the same
    directory is harmless, with another one is an error. ``inherited``: the directory the
    environment already named (``settings.prometheus_multiproc_dir``), which must be the same."""
    global _enabled
    current = _enabled or inherited
    if "prometheus_client" in sys.modules and not is_multiprocess():
        raise FailedPreconditionError(
            f"metrics_dir={path!r} needs prometheus_client's multiprocess mode, but it was "
            "imported before the metrics directory was set"
        )
    if current is not None and os.path.realpath(current) != os.path.realpath(path):
        raise FailedPreconditionError(
            f"metrics_dir={path!r} differs from {MULTIPROC_ENV}={current!r} already in use"
        )
    export_to_environment({MULTIPROC_ENV: path})  # prometheus_client reads it at import
    _enabled = path


def is_multiprocess() -> bool:
    """Whether prometheus_client stores values in shared files (decided at its import)."""
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def mark_dead(pid: int, path: str) -> None:
    """Forget a dead worker's live gauges (in-flight requests, loaded models, memory), so that
    the sums no longer include it. Its counters stay: they were really counted."""
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    except OSError:
        log.warning("could not remove the metric files of dead worker %d", pid, exc_info=True)
