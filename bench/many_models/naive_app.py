"""Mode A of the many-models benchmark: the naive design, weights from object storage on every
request. A raw ASGI app (uvicorn, httptools, uvloop, orjson) that, per request, downloads the
version's files from the artifact store (S3 API) into a temporary directory, loads them with
the same ModelYard runtime (ONNX Runtime, scikit-learn, XGBoost) the server uses, predicts one
batch and throws the model away. Only metadata (which files, which runtime) is kept in memory:
what the naive design does not do is keep weights.

Run: ``python naive_app.py --registry DIR --artifacts s3://... --port P`` (S3 endpoint and keys
from ``MODELYARD_S3_ENDPOINT_URL`` / ``MODELYARD_S3_KEY`` / ``MODELYARD_S3_SECRET``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn

from modelyard.app import runtime_options
from modelyard.registry import ModelVersion, Registry
from modelyard.runtimes import get_runtime_class
from modelyard.settings import load_settings


class NaiveApp:
    def __init__(self, registry: Registry, threads: int) -> None:
        self.registry = registry
        self.options = runtime_options(load_settings())
        self.versions: dict[str, ModelVersion] = {
            info.name: registry.resolve(info.name) for info in registry.list_models()
        }
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="naive")

    def infer(self, name: str, body: bytes) -> bytes:
        mv = self.versions[name]
        doc = orjson.loads(body)
        inputs = {
            t["name"]: np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
            for t in doc["inputs"]
        }
        with tempfile.TemporaryDirectory(prefix="naive-") as tmp:
            files = [f.path for f in mv.manifest.files]
            self.registry.artifact_store.download(mv.artifact_uri, files, Path(tmp))
            runtime = get_runtime_class(mv.manifest.runtime)(Path(tmp), mv.manifest, self.options)
            runtime.load()
            outputs = runtime.predict(inputs)
            runtime.unload()
        return orjson.dumps(
            {
                "model_name": name,
                "model_version": str(mv.version),
                "outputs": [
                    {
                        "name": k,
                        "datatype": "FP32" if v.dtype.kind == "f" else "INT64",
                        "shape": list(v.shape),
                        "data": v.reshape(-1).tolist(),
                    }
                    for k, v in outputs.items()
                ],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, payload = 404, b'{"error":"not found"}'
        if path == "/v2/health/ready":
            status, payload = 200, b""
        elif path.startswith("/v2/models/") and path.endswith("/infer"):
            name = path.split("/")[3]
            if name in self.versions:
                loop = asyncio.get_running_loop()
                try:
                    payload = await loop.run_in_executor(self.pool, self.infer, name, body)
                    status = 200
                except Exception as exc:  # reported to the client: the benchmark counts errors
                    status, payload = 500, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    settings = load_settings(registry=args.registry, artifacts=args.artifacts)
    registry = Registry.from_settings(settings)
    app = NaiveApp(registry, args.threads)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
