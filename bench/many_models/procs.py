"""Processes of the many-models benchmark: each in its own process group (stopped with its
children, by its own id), pinned with ``taskset``, logging to a file; plus small HTTP helpers
and the machine description that goes into the record."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return orjson.loads(resp.read())


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def post(url: str, body: bytes, timeout_s: float = 60.0) -> int:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


@contextlib.contextmanager
def process(
    cmd: list[str], *, cpus: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` pinned to ``cpus`` in a new process group; SIGTERM (then SIGKILL) its group
    on exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["taskset", "-c", cpus, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float, log: Path) -> float:
    """Seconds until ``url`` answers 200; raises with the log's tail if the process dies."""
    started = time.monotonic()
    idle = threading.Event()
    while not is_ready(url):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{url} not ready after {timeout_s} s:\n{tail(log)}")
        idle.wait(0.1)
    return time.monotonic() - started


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (all its threads), from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per thread (OS thread id) of ``pid``."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_names(pid: int, py_spy: str) -> dict[int, str]:
    """Python thread names by OS thread id, from ``py-spy dump`` ("" where it fails)."""
    try:
        dump = subprocess.run(
            [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names: dict[int, str] = {}
    for line in dump.splitlines():
        if line.startswith("Thread ") and '"' in line:
            with contextlib.suppress(ValueError):
                names[int(line.split()[1])] = line.split('"')[1]
    return names


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024**2
    return (
        f"{cpu}, `nproc` = {os.cpu_count()}, {mem:.1f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
