"""The REST app over a FakeDataPlane: every endpoint, errors, limits, deadlines, draining."""

from __future__ import annotations

import asyncio
import gzip
import logging
import zlib
from collections.abc import MutableMapping
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient

from modelyard.core.clock import FakeClock
from modelyard.errors import (
    DeadlineExceededError,
    InferenceError,
    ModelTooLargeError,
    UnavailableError,
)
from modelyard.frontends.rest import HttpRequest, HttpResponse, RestApp, Route, create_rest_app
from tests.unit.frontends.conftest import Client, make_settings
from tests.unit.frontends.fakes import FakeDataPlane

X = np.arange(16, dtype=np.int32).reshape(1, 16)
ONES = np.ones((1, 16), dtype=np.int32)


def simple_doc(**extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": X.ravel().tolist()},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": ONES.tolist()},
        ],
        **extra,
    }


def assert_simple_serves(client: Client) -> None:
    response = client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["OUTPUT0"]["data"] == (X + ONES).ravel().tolist()


# ---- health and metadata --------------------------------------------------------------------
def test_health_is_200_with_an_empty_body_and_400_when_false(
    client: Client, dataplane: FakeDataPlane
) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        response = client.get(path)
        assert (response.status_code, response.content) == (200, b"")
    dataplane.is_live = dataplane.is_ready = False
    for path in ("/v2/health/live", "/v2/health/ready"):
        response = client.get(path)
        assert (response.status_code, response.content) == (400, b"")


def test_draining_fails_readiness_and_closes_connections_but_serves(
    app: RestApp, client: Client
) -> None:
    app.start_draining()
    assert client.get("/v2/health/ready").status_code == 400
    assert client.get("/v2/health/live").status_code == 200
    response = client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == 200
    assert response.headers["connection"] == "close"


def test_server_metadata(client: Client) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    assert response.json() == {
        "name": "modelyard",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "model_repository"],
    }
    assert client.get("/v2/").json()["name"] == "modelyard"


@pytest.mark.parametrize("path", ["/v2/models/simple", "/v2/models/simple/versions/1"])
def test_model_metadata(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "name": "simple",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
            {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
        ],
        "outputs": [
            {"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, 16]},
            {"name": "OUTPUT1", "datatype": "INT32", "shape": [-1, 16]},
        ],
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v2/models/no_such_model", 404),
        ("/v2/models/simple/versions/9", 404),
        ("/v2/models/no_such_model/ready", 404),
    ],
)
def test_unknown_model_or_version_is_404_naming_it(client: Client, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert path.split("/")[3] in response.json()["error"]


def test_model_ready(client: Client, dataplane: FakeDataPlane) -> None:
    assert client.get("/v2/models/simple/ready").status_code == 200
    assert client.get("/v2/models/simple/versions/1/ready").status_code == 200
    dataplane.loaded.discard("simple")
    response = client.get("/v2/models/simple/ready")
    assert (response.status_code, response.content) == (400, b"")


def test_head_answers_like_get_without_a_body(client: Client) -> None:
    response = client.request("HEAD", "/v2")
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["content-length"]) > 0


def test_unknown_route_is_404_and_wrong_method_405(client: Client) -> None:
    response = client.get("/v3/nothing")
    assert response.status_code == 404 and "/v3/nothing" in response.json()["error"]
    response = client.get("/v2/models/simple/infer")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert "GET" in response.json()["error"]


# ---- inference --------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [None, "1"])
def test_infer_json(client: Client, dataplane: FakeDataPlane, version: str | None) -> None:
    path = "/v2/models/simple" + (f"/versions/{version}" if version else "") + "/infer"
    response = client.post(path, content=orjson.dumps(simple_doc(id="abc")))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    doc = response.json()
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("simple", "1", "abc")
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["OUTPUT0"] == {
        "name": "OUTPUT0",
        "datatype": "INT32",
        "shape": [1, 16],
        "data": (X + ONES).ravel().tolist(),
    }
    assert outputs["OUTPUT1"]["data"] == (X - ONES).ravel().tolist()
    name, called_version, _, ctx = dataplane.calls[-1]
    assert (name, called_version, ctx.request_id) == ("simple", version, "abc")
    assert response.headers["x-request-id"] == "abc"


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_infer_with_tritonclient_bodies(client: Client, binary_in: bool, binary_out: bool) -> None:
    inputs = []
    for name, array in (("INPUT0", X), ("INPUT1", ONES)):
        item = httpclient.InferInput(name, [1, 16], "INT32")
        item.set_data_from_numpy(array, binary_data=binary_in)
        inputs.append(item)
    outputs = [httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary_out)]
    body, header_length = httpclient.InferenceServerClient.generate_request_body(inputs, outputs)
    headers = (
        {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    )
    response = client.post("/v2/models/simple/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    assert (length is not None) == binary_out
    expected_type = "application/octet-stream" if binary_out else "application/json"
    assert response.headers["content-type"] == expected_type
    result = httpclient.InferenceServerClient.parse_response_body(
        response.content, header_length=None if length is None else int(length)
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), X - ONES)
    assert result.as_numpy("OUTPUT0") is None  # only the requested output


def test_all_outputs_binary_by_default_for_tritonclient_without_outputs(client: Client) -> None:
    inp = httpclient.InferInput("INPUT0", [2, 3], "FP16")
    inp.set_data_from_numpy(np.full((2, 3), 0.5, dtype=np.float16), binary_data=True)
    body, header_length = httpclient.InferenceServerClient.generate_request_body([inp])
    response = client.post(
        "/v2/models/identity_fp16/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    result = httpclient.InferenceServerClient.parse_response_body(
        response.content, header_length=length
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((2, 3), 0.5, np.float16))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies(client: Client, encoding: str) -> None:
    raw = orjson.dumps(simple_doc())
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    response = client.post(
        "/v2/models/simple/infer", content=body, headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (b"{not json", {}, "not valid JSON"),
        (b'{"inputs": 3}', {}, "inputs"),
        (orjson.dumps(simple_doc()), {"Inference-Header-Content-Length": "x"}, "Inference-Header"),
        (
            orjson.dumps(simple_doc()),
            {"Inference-Header-Content-Length": "99999"},
            "Inference-Header",
        ),
        (orjson.dumps(simple_doc()), {"Content-Encoding": "br"}, "Content-Encoding"),
        (b"not gzip", {"Content-Encoding": "gzip"}, "gzip"),
        (gzip.compress(b"{}")[:-4], {"Content-Encoding": "gzip"}, "truncated"),
        (orjson.dumps(simple_doc(parameters={"timeout": -5})), {}, "timeout"),
        (orjson.dumps(simple_doc()), {"x-modelyard-timeout-ms": "soon"}, "x-modelyard-timeout-ms"),
        (orjson.dumps(simple_doc()), {"x-modelyard-timeout-ms": "nan"}, "x-modelyard-timeout-ms"),
    ],
)
def test_bad_requests_are_400_naming_the_field_then_serving_goes_on(
    client: Client, body: bytes, headers: dict[str, str], needle: str
) -> None:
    response = client.post("/v2/models/simple/infer", content=body, headers=headers)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert_simple_serves(client)


def test_signature_errors_from_the_dataplane_are_400(client: Client) -> None:
    doc = simple_doc()
    doc["inputs"][0].update(shape=[2, 8])
    response = client.post("/v2/models/simple/infer", content=orjson.dumps(doc))
    assert response.status_code == 400 and "INPUT0" in response.json()["error"]
    response = client.post("/v2/models/nope/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == 404 and "nope" in response.json()["error"]
    assert_simple_serves(client)


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (UnavailableError("loading"), 503),
        (DeadlineExceededError("too slow"), 504),
        (InferenceError("engine failed"), 500),
        (ModelTooLargeError("too big for the cache"), 507),
    ],
)
def test_dataplane_errors_map_to_statuses(
    client: Client, dataplane: FakeDataPlane, exc: Exception, status: int
) -> None:
    dataplane.fail_with = exc
    response = client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == status
    assert response.json() == {"error": str(exc)}
    dataplane.fail_with = None
    assert_simple_serves(client)


def test_unexpected_exception_is_a_generic_500_logged_and_serving_goes_on(
    client: Client, dataplane: FakeDataPlane, caplog: pytest.LogCaptureFixture
) -> None:
    dataplane.fail_with = RuntimeError("secret detail")
    with caplog.at_level(logging.ERROR, logger="modelyard.frontends.rest"):
        response = client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert "secret detail" in caplog.text
    dataplane.fail_with = None
    assert_simple_serves(client)


def test_body_over_the_limit_is_413(dataplane: FakeDataPlane) -> None:
    client = Client(create_rest_app(dataplane, make_settings(max_request_bytes=1024)))
    response = client.post("/v2/models/simple/infer", content=b"x" * 2000)
    assert response.status_code == 413
    assert "1024" in response.json()["error"]
    bomb = gzip.compress(b" " * 5000)
    response = client.post(
        "/v2/models/simple/infer", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 413 and "decompressed" in response.json()["error"]
    assert_simple_serves(client)


def test_streamed_body_over_the_limit_is_413_without_content_length(
    dataplane: FakeDataPlane,
) -> None:
    app = create_rest_app(dataplane, make_settings(max_request_bytes=1024))
    status, body = call_with_chunks(app, "/v2/models/simple/infer", [b"x" * 600, b"x" * 600])
    assert status == 413 and b"1024" in body


def test_tensor_over_the_element_limit_is_413(dataplane: FakeDataPlane) -> None:
    client = Client(create_rest_app(dataplane, make_settings(max_tensor_elements=10)))
    response = client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert response.status_code == 413 and "INPUT0" in response.json()["error"]


def test_deadline_from_parameter_header_or_default(
    dataplane: FakeDataPlane, clock: FakeClock
) -> None:
    client = Client(create_rest_app(dataplane, make_settings(default_timeout_s=9.0), clock=clock))
    now = clock.monotonic()
    cases: list[tuple[dict[str, Any], dict[str, str], float | None]] = [
        ({}, {}, now + 9.0),
        ({"timeout": 250_000}, {}, now + 0.25),  # microseconds, as Triton
        ({}, {"x-modelyard-timeout-ms": "40"}, now + 0.04),
        ({"timeout": 250_000}, {"x-modelyard-timeout-ms": "40"}, now + 0.04),  # smaller wins
        ({"timeout": 0}, {}, now + 9.0),  # 0 = none given
    ]
    for parameters, headers, deadline in cases:
        doc = simple_doc(parameters=parameters) if parameters else simple_doc()
        response = client.post(
            "/v2/models/simple/infer", content=orjson.dumps(doc), headers=headers
        )
        assert response.status_code == 200
        assert dataplane.calls[-1][3].deadline == pytest.approx(deadline)


def test_no_deadline_without_timeout_or_default(client: Client, dataplane: FakeDataPlane) -> None:
    client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert dataplane.calls[-1][3].deadline is None


def test_request_id_routing_key_and_headers_reach_the_context(
    client: Client, dataplane: FakeDataPlane
) -> None:
    headers = {"x-request-id": "rid-1", "x-modelyard-key": "user-42", "traceparent": "00-ab"}
    response = client.post(
        "/v2/models/simple/infer", content=orjson.dumps(simple_doc()), headers=headers
    )
    assert response.headers["x-request-id"] == "rid-1"
    ctx = dataplane.calls[-1][3]
    assert (ctx.request_id, ctx.routing_key) == ("rid-1", "user-42")
    assert ctx.headers["traceparent"] == "00-ab"
    assert "id" not in response.json()  # the V2 id echoes only the body's id
    generated = client.post("/v2/models/simple/infer", content=orjson.dumps(simple_doc()))
    assert len(generated.headers["x-request-id"]) == 32


def test_request_parameters_reach_the_dataplane(client: Client, dataplane: FakeDataPlane) -> None:
    doc = simple_doc(parameters={"priority": 2}, outputs=[{"name": "OUTPUT0"}])
    client.post("/v2/models/simple/infer", content=orjson.dumps(doc))
    request = dataplane.calls[-1][2]
    assert request.parameters == {"priority": 2}
    assert request.outputs == ["OUTPUT0"]


# ---- repository extension -------------------------------------------------------------------
def test_repository_index_load_unload(client: Client, dataplane: FakeDataPlane) -> None:
    index = client.post("/v2/repository/index").json()
    assert {"name": "simple", "version": "1", "state": "READY", "reason": ""} in index
    assert client.post("/v2/repository/models/simple/unload").status_code == 200
    ready_only = client.post("/v2/repository/index", json={"ready": True}).json()
    assert "simple" not in {row["name"] for row in ready_only}
    unload = {"parameters": {"unload_dependents": False}}  # what tritonclient sends
    assert client.post("/v2/repository/models/identity_fp32/unload", json=unload).status_code == 200
    response = client.post("/v2/repository/models/simple/load")
    assert (response.status_code, response.content) == (200, b"")
    assert "simple" in dataplane.loaded


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v2/repository/index", {"ready": "yes"}, 400, "ready"),
        ("/v2/repository/index", [1], 400, "JSON object"),
        ("/v2/repository/models/simple/load", {"parameters": 1}, 400, "parameters"),
        ("/v2/repository/models/simple/load", {"parameters": {"config": "{}"}}, 400, "config"),
        ("/v2/repository/models/nope/load", {}, 404, "nope"),
        ("/v2/repository/models/nope/unload", {}, 404, "nope"),
    ],
)
def test_repository_errors(client: Client, path: str, body: Any, status: int, needle: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status
    assert needle in response.json()["error"]


# ---- extension hooks and ASGI details ---------------------------------------------------------
def test_extra_routes_and_fallback(dataplane: FakeDataPlane) -> None:
    async def usage(req: HttpRequest) -> HttpResponse:
        return HttpResponse.json(
            {
                "model": req.params["model"],
                "q": req.headers.get("x-q"),
                "qs": req.query_string.decode(),
            }
        )

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    app = create_rest_app(
        dataplane,
        make_settings(),
        extra_routes=[Route("GET", "/v2/models/{model}/usage", usage)],
        fallback=fallback,
    )
    client = Client(app)
    response = client.get("/v2/models/simple/usage?window=5", headers={"x-q": "1"})
    assert response.json() == {"model": "simple", "q": "1", "qs": "window=5"}
    response = client.get("/ui/index.html")
    assert (response.status_code, response.text) == (299, "/ui/index.html")
    assert client.get("/v2/models/simple/infer").status_code == 405  # known path: no fallback
    assert_simple_serves(client)


def test_clashing_extra_route_is_refused(dataplane: FakeDataPlane) -> None:
    async def handler(req: HttpRequest) -> HttpResponse:
        return HttpResponse()

    with pytest.raises(ValueError, match="twice"):
        create_rest_app(dataplane, make_settings(), extra_routes=[Route("GET", "/v2", handler)])
    with pytest.raises(ValueError, match="segments"):
        create_rest_app(dataplane, make_settings(), extra_routes=[Route("GET", "v2//x", handler)])


def call_with_chunks(app: RestApp, path: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """Drive the ASGI app directly with a body in several messages (no Content-Length)."""
    sent: list[MutableMapping[str, Any]] = []

    async def go() -> None:
        messages = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await app(scope, receive, send)

    asyncio.run(go())
    if not sent:
        return 0, b""
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_client_disconnect_while_reading_sends_nothing(app: RestApp) -> None:
    assert call_with_chunks(app, "/v2/models/simple/infer", []) == (0, b"")
    assert app.in_flight == 0


def test_chunked_body_is_joined(app: RestApp) -> None:
    raw = orjson.dumps(simple_doc())
    status, body = call_with_chunks(app, "/v2/models/simple/infer", [raw[:10], raw[10:]])
    assert status == 200 and orjson.loads(body)["model_name"] == "simple"


def test_lifespan_is_answered(app: RestApp) -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
