"""prometheus-client multiprocess mode: worker processes write, any one of them exports the sum.

Multiprocess mode is fixed when prometheus_client is imported, so the "workers" here are short
Python subprocesses; this process only reads their files (which needs no multiprocess mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from modelyard.errors import FailedPreconditionError
from modelyard.monitoring import multiproc

WORKER = textwrap.dedent(
    """
    import os, sys
    from modelyard.monitoring import multiproc
    multiproc.enable(sys.argv[1])
    from modelyard.core.observer import InferEvent
    from modelyard.monitoring.metrics import Metrics, MetricsObserver
    from modelyard.types import InferRequest, RequestContext

    metrics = Metrics()
    assert metrics.multiprocess
    observer = MetricsObserver(metrics, in_flight=lambda: 2)
    for _ in range(int(sys.argv[2])):
        observer.on_infer(InferEvent("m", "m", "1", "", "OK", 0.02, InferRequest({}), None,
                                     RequestContext()))
    observer.sample()
    sys.stdout.write(f"{os.getpid()}\\n")
    sys.stdout.write(metrics.render().decode())
    """
)


def run_worker(directory: str, requests: int) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, directory, str(requests)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != multiproc.MULTIPROC_ENV},
    ).stdout
    pid, _, text = out.partition("\n")
    return int(pid), text


def aggregate(directory: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def test_workers_counts_add_up_and_a_dead_workers_gauges_go(tmp_path: Path) -> None:
    directory, owned = multiproc.prepare_dir(str(tmp_path / "metrics"))
    assert not owned
    first, _ = run_worker(directory, 3)
    second, text = run_worker(directory, 4)
    # The second worker's own /metrics already shows both workers.
    line = 'modelyard_requests_total{code="OK",endpoint="m",model="m",route="",version="1"} 7.0'
    assert line in text
    labels = {"endpoint": "m", "model": "m", "version": "1", "route": "", "code": "OK"}
    registry = aggregate(directory)
    assert registry.get_sample_value("modelyard_requests_total", labels) == 7
    assert registry.get_sample_value("modelyard_in_flight_requests") == 4  # livesum
    rss = "modelyard_process_resident_memory_bytes"
    for pid in (first, second):
        assert registry.get_sample_value(rss, {"pid": str(pid)})

    multiproc.mark_dead(first, directory)  # what the supervisor does before a restart
    registry = aggregate(directory)
    assert registry.get_sample_value("modelyard_requests_total", labels) == 7  # counted is counted
    assert registry.get_sample_value("modelyard_in_flight_requests") == 2
    assert registry.get_sample_value(rss, {"pid": str(first)}) is None
    assert registry.get_sample_value(rss, {"pid": str(second)})


def test_prepare_dir_empties_a_given_directory_of_old_metric_files(tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    directory, owned = multiproc.prepare_dir(str(tmp_path))
    assert directory == str(tmp_path) and not owned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_prepare_dir_makes_a_temporary_directory_by_default() -> None:
    directory, owned = multiproc.prepare_dir(None)
    try:
        assert owned and Path(directory).is_dir()
    finally:
        multiproc.remove_dir(directory)
    assert not Path(directory).exists()


def test_prepare_dir_names_the_setting_when_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FailedPreconditionError, match="metrics_dir"):
        multiproc.prepare_dir(str(blocker / "sub"))


def test_enable_after_prometheus_client_was_imported_is_an_error(tmp_path: Path) -> None:
    assert "prometheus_client" in sys.modules and not multiproc.is_multiprocess()
    with pytest.raises(FailedPreconditionError, match="imported before"):
        multiproc.enable(str(tmp_path))
    assert multiproc.MULTIPROC_ENV not in os.environ
