"""gRPC with ``settings.admin_token``: RepositoryModelLoad/Unload need ``authorization: Bearer``
metadata (else UNAUTHENTICATED, nothing changes); inference, reads and the index stay open."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from pydantic import SecretStr
from tritonclient.utils import InferenceServerException

from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.frontends.proto import grpc_service_pb2_grpc as pb_grpc
from modelyard.settings import Settings
from tests.unit.frontends_grpc.conftest import RunningServer, running
from tests.unit.frontends_grpc.test_server import simple_inputs

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningServer]:
    with running(Settings(host="127.0.0.1", admin_token=SecretStr(TOKEN))) as server:
        yield server


@pytest.fixture
def stub(guarded: RunningServer) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(guarded.url) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]


RPCS = [
    ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="simple")),
    ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="simple")),
]


@pytest.mark.parametrize(("rpc", "request_"), RPCS, ids=[r for r, _ in RPCS])
@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)],
    ids=["missing", "wrong", "no-scheme"],
)
def test_load_and_unload_are_unauthenticated_without_the_token(
    stub: pb_grpc.GRPCInferenceServiceStub,
    guarded: RunningServer,
    rpc: str,
    request_: object,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    before = dict(guarded.dataplane.loaded)
    with pytest.raises(grpc.RpcError) as raised:
        getattr(stub, rpc)(request_, metadata=metadata)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in (raised.value.details() or "")
    assert guarded.dataplane.loaded == before


def test_load_and_unload_run_with_the_token(guarded: RunningServer) -> None:
    client = triton.InferenceServerClient(guarded.url)
    headers = {"authorization": f"Bearer {TOKEN}"}
    try:
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
            client.unload_model("simple")
        client.unload_model("simple", headers=headers)
        assert guarded.dataplane.loaded["simple"] is False
        client.load_model("simple", headers=headers)
        assert guarded.dataplane.loaded["simple"] is True
    finally:
        client.close()


def test_inference_and_reads_need_no_token(guarded: RunningServer) -> None:
    client = triton.InferenceServerClient(guarded.url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("simple")
        assert client.get_model_metadata("simple", as_json=True)["name"] == "simple"
        assert client.get_model_repository_index(as_json=True)["models"]
        a, b = np.ones((1, 16), np.int32), np.ones((1, 16), np.int32)
        result = client.infer("simple", simple_inputs(a, b))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    finally:
        client.close()
