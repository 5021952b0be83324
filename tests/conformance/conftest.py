"""A real ModelYard server on real ports, serving the test models of tests/testmodels.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.registry.registry import Registry
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import all_test_models


@pytest.fixture(scope="session")
def test_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance")
    registry = Registry(root / "registry")
    try:
        for name, path in all_test_models(root / "models").items():
            registry.push(path, name=name, alias="production")
    finally:
        registry.close()
    return root / "registry"


@pytest.fixture(scope="session")
def server(test_registry: Path) -> Iterator[ServerProcess]:
    proc = start_server(test_registry, "--preload", "simple")
    yield proc
    assert proc.terminate() == 0, proc.log()
