"""A gRPC frontend on a real port 0, served from a background event loop, over a FakeDataPlane."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest
import tritonclient.grpc as triton

from modelyard.frontends.grpc import create_grpc_server
from modelyard.frontends.proto import grpc_service_pb2_grpc as pb_grpc
from modelyard.settings import Settings
from tests.unit.frontends_grpc.fakes import FakeDataPlane

MAX_TENSOR_ELEMENTS = 4096
MAX_REQUEST_BYTES = 256 * 1024


@dataclass
class RunningServer:
    url: str
    dataplane: FakeDataPlane


class _ServerThread:
    """Runs the aio server on its own loop so that synchronous clients can call it."""

    def __init__(self, dataplane: FakeDataPlane, settings: Settings) -> None:
        self._dataplane = dataplane
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> int:
        self._server, port = create_grpc_server(
            self._dataplane, self._settings, port=0, clock=self._dataplane.clock
        )
        await self._server.start()
        return port

    def stop(self) -> None:
        if self._server is not None:
            stop = self._server.stop(None)
            asyncio.run_coroutine_threadsafe(stop, self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@contextlib.contextmanager
def running(settings: Settings) -> Iterator[RunningServer]:
    """A gRPC server with ``settings`` over a fresh fake dataplane, on its own thread."""
    dataplane = FakeDataPlane()
    thread = _ServerThread(dataplane, settings)
    port = thread.start()
    try:
        yield RunningServer(url=f"127.0.0.1:{port}", dataplane=dataplane)
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    settings = Settings(
        host="127.0.0.1",
        max_tensor_elements=MAX_TENSOR_ELEMENTS,
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    with running(settings) as server:
        yield server


@pytest.fixture
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    """The official tritonclient gRPC client."""
    c = triton.InferenceServerClient(server.url)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def stub(server: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    """A bare stub from our own generated code, for requests tritonclient refuses to build."""
    with grpc.insecure_channel(server.url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
