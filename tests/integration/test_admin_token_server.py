"""``MODELYARD_ADMIN_TOKEN`` in a real ``modelyard serve``: management calls need the token over
REST and gRPC, inference does not; without it a server on 0.0.0.0 warns once (also with workers)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.serverproc import start_server

pytestmark = pytest.mark.integration

TOKEN = "integration-s3cret"
WARNING = "set MODELYARD_ADMIN_TOKEN"
INFER = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]
}


def test_management_calls_need_the_token(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "reg", "--demo", "--host", "0.0.0.0", env={"MODELYARD_ADMIN_TOKEN": TOKEN}
    )
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            unload = "/v2/repository/models/simple/unload"
            denied = http.post(unload)
            assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
            spec = {"routes": [{"name": "current", "model": "simple", "weight": 100}]}
            assert http.put("/v2/endpoints/scoring", json=spec).status_code == 401
            assert http.post("/v2/models/simple/infer", json=INFER).status_code == 200
            assert http.get("/v2/endpoints").status_code == 200

            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
                    client.unload_model("simple")
            finally:
                client.close()

            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert http.put("/v2/endpoints/scoring", json=spec, headers=auth).status_code == 201
            assert http.post(unload, headers=auth).status_code == 200
            assert http.get("/v2/models/simple/ready").status_code == 400  # unloaded
        assert WARNING not in server.log()
    finally:
        assert server.terminate() == 0


def test_an_open_management_api_on_all_interfaces_warns_once(tmp_path: Path) -> None:
    server = start_server(tmp_path / "reg", "--host", "0.0.0.0", "--workers", "2")
    try:
        server.wait_for(lambda: server.log().count("modelyard ready") == 2)  # both workers
        assert server.log().count(WARNING) == 1, server.log()
    finally:
        assert server.terminate() == 0
