"""Fixtures: the REST app over a FakeDataPlane with a FakeClock, and an in-process client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from modelyard.core.clock import FakeClock
from modelyard.frontends.rest import RestApp, create_rest_app
from modelyard.settings import Settings
from tests.unit.frontends.fakes import FakeDataPlane


class Client:
    """Synchronous calls into an ASGI app through httpx.ASGITransport (no sockets)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def make_settings(**overrides: Any) -> Settings:
    """Default settings plus ``overrides``, independent of MODELYARD_* variables and files."""
    return Settings.model_construct(**overrides)


@pytest.fixture
def dataplane() -> FakeDataPlane:
    return FakeDataPlane()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(dataplane: FakeDataPlane, clock: FakeClock) -> RestApp:
    return create_rest_app(dataplane, make_settings(), clock=clock)


@pytest.fixture
def client(app: RestApp) -> Client:
    return Client(app)
