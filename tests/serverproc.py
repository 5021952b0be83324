"""Start a real `modelyard serve` process on free ports and wait until it reports ready."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"modelyard listening http=(\d+) grpc=(-?\d+)")


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    http_port: int
    grpc_port: int
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread | None = None
    logged: threading.Condition = field(default_factory=threading.Condition)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        """Join the log pump (it ends at EOF, once the process is gone) and close the pipe."""
        if self.pump is not None:
            self.pump.join(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Block until ``predicate()`` holds; it is re-checked whenever the server logs a line
        (and at least every 0.1 s, for conditions that do not come from the log)."""
        deadline = time.monotonic() + timeout
        with self.logged:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met in {timeout} s:\n{self.log()}")
                self.logged.wait(min(left, 0.1))


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_server(
    registry: Path | str,
    *extra_args: str,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 60.0,
) -> ServerProcess:
    """Run ``python -m modelyard serve`` with ports 0 and return once it listens (and is ready)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), full_env.get("PYTHONPATH", "")]
    )
    cmd = [
        sys.executable,
        "-m",
        "modelyard",
        "serve",
        "--registry",
        str(registry),
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        *extra_args,
    ]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=full_env
    )
    assert proc.stderr is not None
    lines: list[str] = []
    events: queue.Queue[str | None] = queue.Queue()
    logged = threading.Condition()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with logged:
                lines.append(line)
                logged.notify_all()
            events.put(line)
        events.put(None)

    pump_thread = threading.Thread(target=pump, daemon=True)
    pump_thread.start()

    def fail(message: str) -> RuntimeError:
        proc.kill()
        proc.wait(timeout=30)
        pump_thread.join(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()
        return RuntimeError(message + "\n" + "".join(lines))

    http_port = grpc_port = None
    ready = not wait_ready
    while http_port is None or not ready:
        try:
            line = events.get(timeout=timeout)
        except queue.Empty:
            raise fail("server did not start in time:") from None
        if line is None:
            raise fail(f"server exited with {proc.poll()}:")
        m = _LISTENING.search(line)
        if m:
            http_port, grpc_port = int(m.group(1)), int(m.group(2))
        if "modelyard ready" in line:
            ready = True
    return ServerProcess(proc, http_port, grpc_port, lines, pump_thread, logged)
