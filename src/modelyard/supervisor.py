"""``serve --workers N``: N server processes on the same ports, kept alive by a supervisor.

Each worker is a full server process (frontends + dataplane + model cache). They share the HTTP
and gRPC ports through ``SO_REUSEPORT``, so the kernel spreads connections across them. The
supervisor (this process) loads no models: it reserves the ports, starts the workers with the
``spawn`` method (no fork after ONNX Runtime threads exist), restarts a worker that dies, and on
SIGTERM/SIGINT forwards the signal and waits for every worker to drain and exit. It also
creates (and at exit removes) the private directory of the workers' dashboard sockets
(:mod:`modelyard.monitoring.live_peers`), through which any worker's dashboard counts them all.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

from modelyard.errors import UnavailableError
from modelyard.monitoring import live_dir, multiproc
from modelyard.monitoring.logs import announce
from modelyard.settings import Settings

log = logging.getLogger("modelyard.supervisor")


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket so port 0 becomes a concrete port that
    the workers then share; listening sockets alone receive connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UnavailableError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    return sock, sock.getsockname()[1]


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """ONNX Runtime intra-op threads per worker so that workers x threads fit the cores."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(workers, 1))


def _worker_main(settings_data: dict[str, Any], index: int) -> None:
    settings = Settings(**settings_data)
    if settings.metrics and settings.metrics_dir:  # before prometheus_client is imported
        multiproc.enable(settings.metrics_dir, settings.prometheus_multiproc_dir)
    from modelyard.server import run_server

    sys.exit(run_server(settings, reuse_port=True, worker_index=index))


@dataclass
class _Slot:
    index: int
    process: multiprocessing.process.BaseProcess
    restarts: int = 0


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._slots: list[_Slot] = []

    def _spawn(self, index: int, data: dict[str, Any]) -> multiprocessing.process.BaseProcess:
        proc = self._ctx.Process(
            target=_worker_main, args=(data, index), name=f"modelyard-worker-{index}"
        )
        proc.start()
        return proc

    def run(self) -> int:
        s = self.settings
        http_res, http_port = reserve_port(s.host, s.http_port)
        grpc_res = None
        grpc_port = s.grpc_port
        if s.grpc_port >= 0:
            grpc_res, grpc_port = reserve_port(s.host, s.grpc_port)
        threads = s.onnx_intra_op_threads or threads_per_worker(s.workers)
        data = s.model_dump()
        data.update(http_port=http_port, grpc_port=grpc_port, onnx_intra_op_threads=threads)
        data["workers"] = 1
        metrics_dir, owned_dir = None, False
        if s.metrics:  # one fresh prometheus multiprocess directory for all workers
            metrics_dir, owned_dir = multiproc.prepare_dir(s.metrics_dir)
            data["metrics_dir"] = metrics_dir
        peers_dir = None
        if s.ui:  # one private directory of dashboard peer sockets, one per worker
            peers_dir = live_dir.prepare_dir()
            data["live_peers_dir"] = peers_dir
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        announce(
            f"modelyard supervisor workers={s.workers} http={http_port} grpc={grpc_port}",
            "modelyard.supervisor",
        )
        self._slots = [_Slot(i, self._spawn(i, data)) for i in range(s.workers)]
        try:
            while not self._stop.wait(0.2):
                for slot in self._slots:
                    if not slot.process.is_alive() and not self._stop.is_set():
                        log.warning(
                            "worker %d (pid %s) exited with %s; restarting",
                            slot.index,
                            slot.process.pid,
                            slot.process.exitcode,
                        )
                        slot.restarts += 1
                        if metrics_dir is not None and slot.process.pid is not None:
                            multiproc.mark_dead(slot.process.pid, metrics_dir)
                        if peers_dir is not None and slot.process.pid is not None:
                            live_dir.forget(peers_dir, slot.process.pid)
                        slot.process = self._spawn(slot.index, data)
        finally:
            code = self._shutdown()
            http_res.close()
            if grpc_res is not None:
                grpc_res.close()
            if owned_dir and metrics_dir is not None:
                multiproc.remove_dir(metrics_dir)
            if peers_dir is not None:
                live_dir.remove_dir(peers_dir)
        return code

    def _shutdown(self) -> int:
        for slot in self._slots:
            if slot.process.is_alive() and slot.process.pid is not None:
                os.kill(slot.process.pid, signal.SIGTERM)
        code = 0
        for slot in self._slots:
            slot.process.join(self.settings.drain_timeout_s + 10)
            if slot.process.is_alive():
                slot.process.kill()
                code = 1
            elif slot.process.exitcode not in (0, None):
                code = 1
        return code
