"""The pieces every benchmarked system shares: the run context, the process life cycle (pinned
to the server core, in its own process group), readiness, and the ``System`` base class.

A new system or point is one small subclass of :class:`System` in ``systems.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


class Skip(Exception):
    """The system cannot run on this machine; the message says why (shown in the table)."""


class StartError(Exception):
    """The system was installed but did not come up; the message says why."""


@dataclass
class Context:
    """What every system of one benchmark run shares."""

    workdir: Path  # scratch space of this run (registries, configs, nginx prefix)
    logs: Path  # one log file per system process
    venvs: Path  # cached peer venvs (bench/.venvs)
    model: str  # benchmark model name, also the name in every URL
    onnx_path: Path
    body: bytes  # the V2 JSON request every load generator sends
    expected_response: bytes  # a real V2 response for that body (nginx returns it)
    server_cpus: str = "0"
    python: str = sys.executable  # the project venv's interpreter


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """One POST with a JSON body; (status, body); status 0 when nothing answered."""
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class System:
    """One server under load.

    Subclasses set :attr:`name` and implement :meth:`command`; they may override
    :meth:`prepare` (install, build config; raise :class:`Skip` when impossible), :meth:`env`,
    :meth:`cwd`, :meth:`check_response` and :meth:`versions`. The harness calls
    ``prepare(); start(); ... url/infer_url/body ...; stop()``.
    """

    name = ""
    start_timeout_s = 90.0
    stop_timeout_s = 20.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = ctx.logs / f"{self.name}.log"

    # ---- what subclasses provide ----------------------------------------------------------
    def prepare(self) -> None:
        """Install or build what the system needs; raise Skip(reason) if it cannot run here."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def cwd(self) -> Path:
        return self.ctx.workdir

    def check_response(self, body: bytes) -> None:
        """Raise StartError unless ``body`` is a V2 response with outputs (a real inference)."""
        try:
            outputs = orjson.loads(body).get("outputs")
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise StartError(f"answer is not a JSON object: {body[:200]!r}") from exc
        if not isinstance(outputs, list) or not outputs:
            raise StartError(f"answer has no outputs: {body[:200]!r}")

    def versions(self) -> dict[str, str]:
        return {}

    # ---- the life cycle --------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.ctx.model}/infer"

    @property
    def body(self) -> bytes:
        return self.ctx.body

    def start(self) -> None:
        """Start pinned to the server cores, in a new process group; wait until one real
        inference request succeeds. Raises StartError (with the log's tail)."""
        env = {**os.environ, **self.env()}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                ["taskset", "-c", self.ctx.server_cpus, *self.command()],
                cwd=self.cwd(),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        status, answer = 0, b""
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise StartError(
                    f"exited with {self._proc.returncode} (log {self.log_path}):\n"
                    + tail(self.log_path)
                )
            status, answer = post(self.infer_url, self.body, timeout_s=5.0)
            if status == 200:
                self.check_response(answer)
                return
            time.sleep(0.25)  # polling a starting server; not test synchronisation
        self.stop()
        raise StartError(
            f"not ready after {self.start_timeout_s:.0f} s (last status {status}: "
            f"{answer[:200]!r}; log {self.log_path}):\n" + tail(self.log_path)
        )

    def stop(self) -> None:
        """SIGTERM the system's process group (servers spawn workers), SIGKILL if it lingers."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Workers that outlive the leader (e.g. a pool) still belong to the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
