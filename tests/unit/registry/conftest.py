"""Fixtures for the registry tests (and, imported, the fleet tests): fake runtimes installed,
a fake clock, a SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.core.clock import FakeClock
from modelyard.registry import Registry
from tests.unit.registry.fakes import install_fakes


@pytest.fixture(autouse=True)
def _fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    install_fakes(monkeypatch)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(tmp_path: Path, clock: FakeClock) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg", clock=clock)
    yield reg
    reg.close()
