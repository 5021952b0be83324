"""Choosing the HTTP server: the setting, the flag, the refusal when granian is missing, and
granian's logging (its level, and the notice left out). No sockets are served here."""

from __future__ import annotations

import importlib.util
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from modelyard.cli import main
from modelyard.errors import MissingDependencyError
from modelyard.http_granian import GranianHttpServer, _DropExperimentalNotice, granian_log_level
from modelyard.http_server import UvicornHttpServer, check_http_server, create_http_server
from modelyard.settings import Settings


async def _app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


@pytest.fixture
def without_granian(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "granian" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def test_uvicorn_is_the_default_and_env_picks_granian(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELYARD_HTTP_SERVER", raising=False)
    assert Settings().http_server == "uvicorn"
    monkeypatch.setenv("MODELYARD_HTTP_SERVER", "granian")
    assert Settings().http_server == "granian"


def test_an_unknown_http_server_is_refused() -> None:
    with pytest.raises(ValidationError, match="http_server"):
        Settings(http_server="hypercorn")


@pytest.mark.parametrize(
    ("kind", "cls"), [("uvicorn", UvicornHttpServer), ("granian", GranianHttpServer)]
)
def test_the_setting_picks_the_server(kind: str, cls: type, sock: socket.socket) -> None:
    assert type(create_http_server(Settings(http_server=kind), _app, sock)) is cls


@pytest.mark.usefixtures("without_granian")
def test_granian_missing_is_refused_with_the_install_hint(sock: socket.socket) -> None:
    check_http_server(Settings())  # uvicorn needs nothing optional
    hint = r"granian is not installed; install it with: pip install 'modelyard\[granian\]'"
    with pytest.raises(MissingDependencyError, match=hint):
        check_http_server(Settings(http_server="granian"))
    with pytest.raises(MissingDependencyError, match=hint):
        create_http_server(Settings(http_server="granian"), _app, sock)


@pytest.mark.usefixtures("without_granian")
def test_serve_refuses_granian_missing_before_serving(tmp_path: Path) -> None:
    args = ["serve", "--registry", str(tmp_path / "reg"), "--http-server", "granian"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "error: granian is not installed" in result.output
    assert "modelyard[granian]" in result.output
    assert not (tmp_path / "reg").exists()  # refused before the registry was opened


def test_serve_flag_accepts_only_known_servers() -> None:
    result = CliRunner().invoke(main, ["serve", "--http-server", "hypercorn"])
    assert result.exit_code == 2
    assert "uvicorn" in result.output and "granian" in result.output


@pytest.mark.parametrize(
    ("log_level", "log_levels", "expected"),
    [
        ("info", {}, logging.WARNING),  # quiet like uvicorn's loggers
        ("debug", {}, logging.WARNING),
        ("error", {}, logging.ERROR),
        ("info", {"_granian": "debug"}, logging.DEBUG),  # named: exactly that
        ("error", {"_granian": "info"}, logging.INFO),
        ("info", {"modelyard.batcher": "debug"}, logging.WARNING),
    ],
)
def test_granian_log_level(log_level: str, log_levels: dict[str, str], expected: int) -> None:
    settings = Settings(log_level=log_level, log_levels=log_levels)
    assert granian_log_level(settings) == expected


def test_only_the_experimental_notice_is_dropped() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.makeLogRecord({"name": "_granian", "msg": message})

    keep = _DropExperimentalNotice()
    assert not keep.filter(record("Embedded server is experimental!"))
    assert keep.filter(record("Killing worker-1 after it refused to gracefully stop"))
