"""The gRPC port is this server's alone unless it is asked to share it (the workers of
``serve --workers N``): grpcio sets SO_REUSEPORT by default, which let a second server start on
a port in use and take part of its calls."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.errors import UnavailableError
from modelyard.frontends.grpc import create_grpc_server
from modelyard.settings import Settings
from tests.unit.frontends_grpc.fakes import FakeDataPlane

SETTINGS = Settings(host="127.0.0.1")


def test_a_port_in_use_is_refused() -> None:
    async def main() -> None:
        first, port = create_grpc_server(FakeDataPlane(), SETTINGS, port=0)
        await first.start()
        try:
            with pytest.raises(UnavailableError, match=f"cannot bind the gRPC server to .*:{port}"):
                create_grpc_server(FakeDataPlane(), SETTINGS, port=port)
        finally:
            await first.stop(None)

    asyncio.run(main())


def test_workers_share_the_port_when_they_all_ask_to() -> None:
    async def main() -> None:
        first, port = create_grpc_server(FakeDataPlane(), SETTINGS, port=0, reuse_port=True)
        await first.start()
        try:
            second, again = create_grpc_server(
                FakeDataPlane(), SETTINGS, port=port, reuse_port=True
            )
            assert again == port
            await second.stop(None)
        finally:
            await first.stop(None)

    asyncio.run(main())
