"""The gRPC frontend driven by the official ``tritonclient.grpc.aio`` client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from modelyard.types import Datatype
from tests.unit.frontends_grpc.conftest import RunningServer
from tests.unit.frontends_grpc.fakes import identity_name
from tests.unit.frontends_grpc.test_server import sample_pair, simple_inputs

pytestmark = pytest.mark.conformance


def run(server: RunningServer, scenario: Any) -> Any:
    async def main() -> Any:
        client = triton_aio.InferenceServerClient(server.url)
        try:
            return await scenario(client)
        finally:
            await client.close()

    return asyncio.run(main())


def test_health_and_metadata(server: RunningServer) -> None:
    async def scenario(client: triton_aio.InferenceServerClient) -> None:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("simple")
        meta = await client.get_server_metadata(as_json=True)
        assert meta["name"] == "modelyard"
        model = await client.get_model_metadata("simple", as_json=True)
        assert [i["name"] for i in model["inputs"]] == ["INPUT0", "INPUT1"]

    run(server, scenario)


def test_concurrent_infers(server: RunningServer) -> None:
    async def scenario(client: triton_aio.InferenceServerClient) -> None:
        pairs = [(np.full((1, 16), i, np.int32), np.ones((1, 16), np.int32)) for i in range(8)]
        results = await asyncio.gather(
            *(client.infer("simple", simple_inputs(a, b)) for a, b in pairs)
        )
        for (a, b), result in zip(pairs, results, strict=True):
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)

    run(server, scenario)


def test_fp16_and_bool(server: RunningServer) -> None:
    async def scenario(client: triton_aio.InferenceServerClient) -> None:
        for datatype, data in (
            (Datatype.FP16, np.array([[1.5, -2.25, 65504.0]], dtype=np.float16)),
            (Datatype.BOOL, np.array([[True, False]])),
        ):
            tensor = triton.InferInput("INPUT0", list(data.shape), datatype.value)
            tensor.set_data_from_numpy(data)
            result = await client.infer(identity_name(datatype), [tensor])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

    run(server, scenario)


def test_errors_then_recovery(server: RunningServer) -> None:
    async def scenario(client: triton_aio.InferenceServerClient) -> None:
        a, b = sample_pair()
        with pytest.raises(InferenceServerException) as info:
            await client.infer("no_such_model", simple_inputs(a, b))
        assert info.value.status() == "StatusCode.NOT_FOUND"
        result = await client.infer("simple", simple_inputs(a, b))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)

    run(server, scenario)


def test_stream_infer(server: RunningServer) -> None:
    a, b = sample_pair()

    async def requests() -> AsyncIterator[dict[str, Any]]:
        yield {"model_name": "simple", "inputs": simple_inputs(a, b), "request_id": "1"}
        yield {"model_name": "simple", "inputs": simple_inputs(a, a[:, :8]), "request_id": "2"}
        yield {"model_name": "simple", "inputs": simple_inputs(b, a), "request_id": "3"}

    async def scenario(client: triton_aio.InferenceServerClient) -> list[Any]:
        return [item async for item in client.stream_infer(requests())]

    first, second, third = run(server, scenario)
    np.testing.assert_array_equal(first[0].as_numpy("OUTPUT0"), a + b)
    assert second[0] is None
    assert "INPUT1" in second[1].message()
    assert third[0].get_response().id == "3"
    np.testing.assert_array_equal(third[0].as_numpy("OUTPUT0"), a + b)
