"""The official asyncio clients (tritonclient.http.aio, tritonclient.grpc.aio): many concurrent
requests on one connection pool, each answer matching its own request (no cross-talk)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio

from tests.serverproc import ServerProcess

pytestmark = pytest.mark.conformance

CONCURRENT = 32


def _pair(i: int) -> tuple[np.ndarray, np.ndarray]:
    input0 = np.arange(16, dtype=np.int32).reshape(1, 16) * i
    return input0, np.full((1, 16), i, dtype=np.int32)


async def _http_all(url: str) -> list[tuple[int, Any, Any]]:
    async with httpaio.InferenceServerClient(url) as client:
        assert await client.is_server_ready()

        async def one(i: int) -> tuple[int, Any, Any]:
            a, b = _pair(i)
            inputs = [
                httpaio.InferInput("INPUT0", [1, 16], "INT32").set_data_from_numpy(a),
                httpaio.InferInput("INPUT1", [1, 16], "INT32").set_data_from_numpy(
                    b, binary_data=False
                ),
            ]
            result = await client.infer("simple", inputs, request_id=str(i))
            assert result.get_response()["id"] == str(i)
            return i, result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")

        return list(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))


async def _grpc_all(url: str) -> list[tuple[int, Any, Any]]:
    async with grpcaio.InferenceServerClient(url) as client:
        assert await client.is_server_ready()

        async def one(i: int) -> tuple[int, Any, Any]:
            a, b = _pair(i)
            inputs = [
                grpcaio.InferInput("INPUT0", [1, 16], "INT32").set_data_from_numpy(a),
                grpcaio.InferInput("INPUT1", [1, 16], "INT32").set_data_from_numpy(b),
            ]
            result = await client.infer("simple", inputs, request_id=str(i))
            assert result.get_response().id == str(i)
            return i, result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")

        return list(await asyncio.gather(*(one(i) for i in range(CONCURRENT))))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_concurrent_requests_get_their_own_answers(server: ServerProcess, protocol: str) -> None:
    if protocol == "http":
        answers = asyncio.run(_http_all(server.http_url))
    else:
        answers = asyncio.run(_grpc_all(server.grpc_url))
    assert len(answers) == CONCURRENT
    for i, out0, out1 in answers:
        a, b = _pair(i)
        np.testing.assert_array_equal(out0, a + b)
        np.testing.assert_array_equal(out1, a - b)
