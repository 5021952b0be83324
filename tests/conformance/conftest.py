"""A real ModelYard server on real ports, serving the test models of tests/testmodels.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

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


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    """tritonclient's HTTP client on the server (a module may override ``http`` with its own)."""
    client = httpclient.InferenceServerClient(server.http_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    """tritonclient's gRPC client on the server."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    yield client
    client.close()
