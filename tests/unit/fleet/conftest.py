"""Fixtures for the fleet tests: the registry tests' own (a SQLite registry of fake models, a fake
clock), shared rather than copied."""

from __future__ import annotations

from tests.unit.registry.conftest import _fakes, clock, registry

__all__ = ["_fakes", "clock", "registry"]
