"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    """The directory through which a test opens and watches a ``tests.slowmodel.SlowModel``."""
    path = tmp_path / "gates"
    path.mkdir()
    return path
