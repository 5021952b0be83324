"""The hand-written baseline: raw ASGI + orjson + ONNX Runtime, no framework at all.

It answers the Open Inference Protocol V2 calls the benchmark makes (``POST
/v2/models/{name}/infer`` with JSON tensors, ``GET /v2/health/ready``) for one ONNX model, so it
shows what the same model costs on the same HTTP server with nothing in between. Configured by
env: ``BENCH_MODEL_PATH`` (the .onnx file) and ``BENCH_MODEL_NAME``; ``BENCH_BUSY_US`` (default
0) adds that much busy CPU work to each inference, to give the bare app another server's
per-request cost (how the tail at saturation grows with it: BENCHMARKS.md). Run it with

    uvicorn baseline_asgi:app --http httptools --loop uvloop --no-access-log   (from bench/)
    granian --interface asgi --loop uvloop baseline_asgi:app                    (optional)
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
_V2 = {np.dtype(v): k for k, v in _NUMPY.items()}
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # One thread: the server is pinned to one core; more threads would only contend for it.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "logreg")
SESSION = _session(os.environ["BENCH_MODEL_PATH"])
INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
BUSY_S = float(os.environ.get("BENCH_BUSY_US", "0")) / 1e6


def infer(body: bytes) -> bytes:
    if BUSY_S:
        end = time.perf_counter() + BUSY_S
        while time.perf_counter() < end:
            pass
    request = orjson.loads(body)
    feeds = {
        t["name"]: np.asarray(t["data"], dtype=_NUMPY[t["datatype"]]).reshape(t["shape"])
        for t in request["inputs"]
    }
    names = [o.name for o in SESSION.get_outputs()]
    results = SESSION.run(names, feeds)
    outputs = [
        {"name": n, "datatype": _V2[r.dtype], "shape": list(r.shape), "data": r.ravel()}
        for n, r in zip(names, results, strict=True)
    ]
    reply = {"model_name": MODEL_NAME, "model_version": "1", "outputs": outputs}
    return orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to set up beyond module import
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == INFER_PATH:
        body = await _read_body(receive)
        try:
            # Inference runs inline: for a 25 µs model a thread hop costs more than it saves.
            await _reply(send, 200, infer(body))
        except (KeyError, TypeError, ValueError) as exc:
            await _reply(send, 400, orjson.dumps({"error": str(exc)}))
    elif method == "GET" and path in ("/v2/health/ready", "/v2/health/live"):
        await _reply(send, 200, b"{}")
    else:
        await _reply(send, 404, b'{"error":"not found"}')
