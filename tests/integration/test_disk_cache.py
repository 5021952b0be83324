"""Two tiers under RAM: a model evicted from the model cache reloads from the local disk copy,
checksum-verified, without touching the remote store (here: the S3-API server is stopped
before the reload)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.registry import Registry
from tests.integration.conftest import S3Server, service_missing
from tests.serverproc import ServerProcess, start_server
from tests.testmodels import simple_model

pytestmark = pytest.mark.integration

X = list(range(16))
BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": X},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": X},
    ]
}


@pytest.fixture
def own_s3() -> Iterator[tuple[S3Server, Any]]:
    """An S3-API server of this test's own (moto), so the test may stop it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        service_missing("moto[server] is not installed")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    s3 = S3Server(f"http://{host}:{port}", "k", "s", f"modelyard-{uuid.uuid4().hex[:12]}")
    s3.client().create_bucket(Bucket=s3.bucket)
    stopped = [False]

    def stop() -> None:
        if not stopped[0]:
            stopped[0] = True
            moto.stop()

    yield s3, stop
    stop()


def cache_doc(server: ServerProcess) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{server.base_url}/v2/fleet/cache", timeout=10).json()
    return doc


def test_an_evicted_model_reloads_from_disk_without_the_remote_store(
    tmp_path: Path, own_s3: tuple[S3Server, Any]
) -> None:
    s3, stop_s3 = own_s3
    artifacts = f"s3://{s3.bucket}/models"
    with Registry(
        tmp_path / "reg", artifacts=artifacts, storage_options=s3.storage_options()
    ) as reg:
        reg.push(simple_model(tmp_path / "simple.onnx"), name="simple")
        reg.push(simple_model(tmp_path / "simple.onnx"), name="never_fetched")
    server = start_server(
        tmp_path / "reg",
        env={
            "MODELYARD_ARTIFACTS": artifacts,
            "MODELYARD_S3_ENDPOINT_URL": s3.endpoint_url,
            "MODELYARD_S3_KEY": s3.key,
            "MODELYARD_S3_SECRET": s3.secret,
            "AWS_DEFAULT_REGION": s3.region,
            "MODELYARD_LOCAL_CACHE_DIR": str(tmp_path / "disk"),
            "MODELYARD_IDLE_UNLOAD_S": "1",
        },
    )
    try:
        infer = f"{server.base_url}/v2/models/simple/infer"
        assert httpx.post(infer, json=BODY, timeout=30).status_code == 200
        first = cache_doc(server)
        assert first["entries"][0]["fetch_s"] > 0
        assert (first["disk"]["entries"], first["disk"]["root"]) == (1, str(tmp_path / "disk"))

        server.wait_for(lambda: cache_doc(server)["entries"] == [])  # idle: unloaded from RAM
        stop_s3()  # from here on, any read from the remote store would fail

        response = httpx.post(infer, json=BODY, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == "1"
        after = cache_doc(server)
        assert after["stats"]["loads"] == 2 and after["stats"]["idle_unloads"] == 1
        assert after["entries"][0]["state"] == "READY"
        # The control: what is not on disk really cannot come from the (stopped) store.
        missing = httpx.post(
            f"{server.base_url}/v2/models/never_fetched/infer", json=BODY, timeout=120
        )
        assert missing.status_code != 200
    finally:
        assert server.terminate() == 0, server.log()
