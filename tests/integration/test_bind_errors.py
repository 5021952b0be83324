"""``serve`` on a port another process holds: one error line naming the address, exit 1 (not
a traceback), alone or with ``--workers``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def taken() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize(
    ("workers", "message"),
    [
        ("1", "cannot bind the HTTP server to 127.0.0.1:{port}"),
        ("2", "cannot bind 127.0.0.1:{port}"),
    ],
)
def test_serve_on_a_taken_http_port_says_so_in_one_line(
    taken: int, tmp_path: Path, workers: str, message: str
) -> None:
    args = ["serve", "--registry", str(tmp_path / "reg"), "--host", "127.0.0.1"]
    args += ["--http-port", str(taken), "--grpc-port", "-1", "--workers", workers]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: {message.format(port=taken)}: ")
    assert "Traceback" not in result.output
