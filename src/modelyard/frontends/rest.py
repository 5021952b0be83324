"""The REST frontend: Open Inference Protocol V2 (KServe V2) over HTTP, as a raw ASGI app.

Endpoints: ``GET /v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{m}[/versions/{v}]``
and ``.../ready``, ``.../config`` (model configuration); ``POST .../infer`` (JSON or the binary
tensor data extension); the statistics extension (``GET /v2/models[/{m}[/versions/{v}]]/stats``);
the repository extension (``POST /v2/repository/index``, ``/v2/repository/models/{m}/load``,
``.../unload``); KServe V1 (``GET /v1/models``, ``GET /v1/models/{m}``,
``POST /v1/models/{m}:predict``).

``GET /v2/models/stats`` is the statistics of every model, as in Triton, so the metadata of a
model literally named ``stats`` is read through ``/v2/models/stats/versions/{v}`` (its inference,
readiness, configuration and ``/v2/models/stats/stats`` are unaffected).

No web framework: one precompiled router (a dict for static paths, literal segment compares for
the rest), orjson, and the codec's vectorised tensor decoding keep the per-request overhead small.
Handlers call only the :class:`~modelyard.core.dataplane.DataPlane`; errors become
``{"error": ...}`` through the one table in :mod:`modelyard.frontends.http_errors`.

Request headers understood: ``Inference-Header-Content-Length`` (binary extension),
``Content-Encoding: gzip|deflate``, ``x-request-id`` (echoed back), ``x-modelyard-timeout-ms``
(deadline; so is the Triton-style request parameter ``timeout`` in microseconds; the smaller wins;
0 means none) and ``x-modelyard-key`` (routing key for sticky traffic splits). Responses of
endpoints carry ``x-modelyard-route``: the traffic route that served the request. With
``settings.admin_token`` set, routes that change state (:attr:`Route.changes_state`: repository
load/unload, endpoint PUT/DELETE) need ``Authorization: Bearer <token>``, else 401
(:mod:`modelyard.frontends.admin_auth`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.errors import ErrorCode, InvalidInputError, ModelYardError
from modelyard.frontends import v1
from modelyard.frontends.admin_auth import AUTHORIZATION, SCHEME, AdminAuth
from modelyard.frontends.asgi import (
    OCTET_STREAM,
    ASGIApp,
    Handler,
    HttpRequest,
    HttpResponse,
    Receive,
    Route,
    Router,
    Scope,
    Send,
    lifespan,
    no_route,
    read_body,
    send_response,
)
from modelyard.frontends.codec import (
    decode_infer_request,
    encode_infer_response,
    load_json,
    model_config_doc,
    statistics_doc,
)
from modelyard.frontends.http_errors import HEALTH_FALSE_STATUS, error_response
from modelyard.monitoring import tracing
from modelyard.settings import Settings
from modelyard.types import ModelMetadata, RequestContext, TensorSpec

logger = logging.getLogger(__name__)

INFERENCE_HEADER = "inference-header-content-length"
TIMEOUT_HEADER = "x-modelyard-timeout-ms"
KEY_HEADER = "x-modelyard-key"
REQUEST_ID_HEADER = "x-request-id"
ROUTE_HEADER = "x-modelyard-route"


_HEALTH_TRUE = HttpResponse(200, b"", None)
_HEALTH_FALSE = HttpResponse(HEALTH_FALSE_STATUS, b"", None)


def create_rest_app(
    dataplane: DataPlane,
    settings: Settings,
    *,
    extra_routes: Iterable[Route] = (),
    fallback: ASGIApp | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> RestApp:
    """Build the REST ASGI app.

    ``extra_routes`` are mounted beside the built-in ones (``{param}`` path segments; a clash
    with a built-in route is an error). Requests no route matches go to ``fallback`` when given
    (e.g. a UI or metrics app), else get a 404. Call :meth:`RestApp.start_draining` on shutdown.
    """
    return RestApp(dataplane, settings, extra_routes=extra_routes, fallback=fallback, clock=clock)


class RestApp:
    """The ASGI application. ``draining`` makes readiness fail and closes keep-alive connections
    while in-flight requests (``in_flight``) finish."""

    def __init__(
        self,
        dataplane: DataPlane,
        settings: Settings,
        *,
        extra_routes: Iterable[Route] = (),
        fallback: ASGIApp | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._dataplane = dataplane
        self._max_body = settings.max_request_bytes
        self._max_elements = settings.max_tensor_elements
        self._default_timeout = settings.default_timeout_s
        self._clock = clock
        self._fallback = fallback
        self.draining = False
        self.in_flight = 0
        auth = AdminAuth(settings.admin_token)
        routes = [*self._builtin_routes(), *extra_routes]
        self.router = Router(
            [_admin_only(r, auth) if auth.enabled and r.changes_state else r for r in routes]
        )

    def start_draining(self) -> None:
        """Stop reporting ready and ask clients to close connections; keep serving requests."""
        self.draining = True

    def _builtin_routes(self) -> list[Route]:
        get, post = "GET", "POST"
        return [
            Route(get, "/v2/health/live", self._live),
            Route(get, "/v2/health/ready", self._ready),
            Route(get, "/v2", self._server_metadata),
            Route(get, "/v2/models/{model}", self._model_metadata),
            Route(get, "/v2/models/{model}/versions/{version}", self._model_metadata),
            Route(get, "/v2/models/{model}/ready", self._model_ready),
            Route(get, "/v2/models/{model}/versions/{version}/ready", self._model_ready),
            Route(get, "/v2/models/{model}/config", self._model_config),
            Route(get, "/v2/models/{model}/versions/{version}/config", self._model_config),
            # A static path: the router tries it before the /v2/models/{model} pattern.
            Route(get, "/v2/models/stats", self._model_statistics),
            Route(get, "/v2/models/{model}/stats", self._model_statistics),
            Route(get, "/v2/models/{model}/versions/{version}/stats", self._model_statistics),
            # Reads sent as POST: open even when settings.admin_token guards management calls.
            Route(post, "/v2/models/{model}/infer", self._infer, mutating=False),
            Route(post, "/v2/models/{model}/versions/{version}/infer", self._infer, mutating=False),
            Route(post, "/v2/repository/index", self._repository_index, mutating=False),
            Route(post, "/v2/repository/models/{model}/load", self._load),
            Route(post, "/v2/repository/models/{model}/unload", self._unload),
            Route(get, "/v1/models", self._v1_models),
            Route(get, "/v1/models/{model}", self._v1_model),
            Route(post, "/v1/models/{model}", self._v1_predict, mutating=False),
        ]

    # ---- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await lifespan(receive, send)
        elif self._fallback is not None:
            await self._fallback(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        handler, params, allowed = self.router.match(method, path)
        if handler is None and self._fallback is not None and not allowed:
            await self._fallback(scope, receive, send)
            return
        self.in_flight += 1
        try:
            if handler is None:
                response: HttpResponse | None = no_route(method, path, allowed)
            else:
                response = await self._handle(handler, scope, receive, params)
            if response is not None:  # None: the client went away
                await send_response(send, response, head=method == "HEAD", close=self.draining)
        finally:
            self.in_flight -= 1

    async def _handle(
        self, handler: Handler, scope: Scope, receive: Receive, params: dict[str, str]
    ) -> HttpResponse | None:
        method: str = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        try:
            if method != "GET" and method != "HEAD":
                received = await read_body(receive, headers, self._max_body)
                if received is None:
                    return None
                body = received
            request = HttpRequest(
                method, scope["path"], params, headers, body, scope.get("query_string", b"")
            )
            return await handler(request)
        except Exception as exc:
            status, payload = error_response(exc)
            if not isinstance(exc, ModelYardError):
                logger.exception("unhandled error in %s %s", method, scope["path"])
            elif exc.code is ErrorCode.INTERNAL:  # 503/504 are load, not faults: not logged
                logger.warning("%s %s: %s", method, scope["path"], exc)
            # RFC 9110: a 401 names the authentication scheme that would be accepted.
            challenge = [("www-authenticate", SCHEME)] if status == 401 else []
            return HttpResponse(status, payload, headers=challenge)

    # ---- health and metadata ------------------------------------------------------------------
    async def _live(self, req: HttpRequest) -> HttpResponse:
        return _HEALTH_TRUE if self._dataplane.live() else _HEALTH_FALSE

    async def _ready(self, req: HttpRequest) -> HttpResponse:
        ready = not self.draining and self._dataplane.ready()
        return _HEALTH_TRUE if ready else _HEALTH_FALSE

    async def _model_ready(self, req: HttpRequest) -> HttpResponse:
        params = req.params
        ready = await self._dataplane.model_ready(params["model"], params.get("version"))
        return _HEALTH_TRUE if ready else _HEALTH_FALSE

    async def _server_metadata(self, req: HttpRequest) -> HttpResponse:
        meta = self._dataplane.server_metadata()
        return HttpResponse.json(
            {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}
        )

    async def _model_metadata(self, req: HttpRequest) -> HttpResponse:
        params = req.params
        meta = await self._dataplane.model_metadata(params["model"], params.get("version"))
        return HttpResponse.json(_metadata_doc(meta))

    async def _model_config(self, req: HttpRequest) -> HttpResponse:
        params = req.params
        config = await self._dataplane.model_config(params["model"], params.get("version"))
        return HttpResponse.json(model_config_doc(config))

    async def _model_statistics(self, req: HttpRequest) -> HttpResponse:
        params = req.params
        stats = await self._dataplane.model_statistics(params.get("model"), params.get("version"))
        return HttpResponse.json(statistics_doc(stats))

    # ---- inference ----------------------------------------------------------------------------
    async def _infer(self, req: HttpRequest) -> HttpResponse:
        headers = req.headers
        request = decode_infer_request(req.body, _header_length(headers), self._max_elements)
        ctx = self._context(headers, request.id, request.parameters)
        params = req.params
        with tracing.start_span(tracing.SPAN_HTTP, ctx, server=True):  # continues a traceparent
            response = await self._dataplane.infer(
                params["model"], params.get("version"), request, ctx
            )
            body, json_length = encode_infer_response(response, request)
        headers_out = [(REQUEST_ID_HEADER, ctx.request_id)]
        route = response.parameters.get("route") if response.parameters else None
        if isinstance(route, str):  # set by the traffic layer for endpoints
            headers_out.append((ROUTE_HEADER, route))
        if json_length is None:
            return HttpResponse(200, body, headers=headers_out)
        headers_out.append(("Inference-Header-Content-Length", str(json_length)))
        return HttpResponse(200, body, OCTET_STREAM, headers_out)

    def _context(
        self, headers: dict[str, str], request_id: str | None, parameters: Mapping[str, Any]
    ) -> RequestContext:
        return RequestContext(
            request_id=request_id or headers.get(REQUEST_ID_HEADER) or _new_request_id(),
            deadline=self._deadline(headers, parameters),
            routing_key=headers.get(KEY_HEADER),
            headers=headers,
        )

    def _deadline(self, headers: Mapping[str, str], parameters: Mapping[str, Any]) -> float | None:
        timeouts: list[float] = []
        micros = parameters.get("timeout")
        if micros is not None:
            if type(micros) not in (int, float) or not 0 <= micros < math.inf:
                raise InvalidInputError(
                    "parameters.timeout must be a non-negative number of microseconds"
                )
            if micros:
                timeouts.append(micros / 1e6)
        header = headers.get(TIMEOUT_HEADER)
        if header is not None:
            try:
                millis = float(header)
            except ValueError:
                millis = -1.0
            if not 0 <= millis < math.inf:
                raise InvalidInputError(
                    f"header {TIMEOUT_HEADER} must be a non-negative number of milliseconds"
                )
            if millis:
                timeouts.append(millis / 1e3)
        timeout = min(timeouts) if timeouts else self._default_timeout
        return None if timeout is None else self._clock.monotonic() + timeout

    # ---- repository extension -----------------------------------------------------------------
    async def _repository_index(self, req: HttpRequest) -> HttpResponse:
        doc = _optional_object(req.body)
        ready = doc.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInputError("ready must be true or false")
        entries = await self._dataplane.repository_index(ready_only=ready)
        return HttpResponse.json(
            [
                {"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
                for e in entries
            ]
        )

    async def _load(self, req: HttpRequest) -> HttpResponse:
        params = _optional_object(req.body).get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInputError("parameters must be a JSON object")
        if any(key == "config" or key.startswith("file:") for key in params):
            raise InvalidInputError(
                "parameters.config and file: overrides are not supported; push a version instead"
            )
        await self._dataplane.load_model(req.params["model"])
        return HttpResponse(200, b"", None)

    async def _unload(self, req: HttpRequest) -> HttpResponse:
        _optional_object(req.body)  # unload_dependents has no meaning here: no ensembles
        await self._dataplane.unload_model(req.params["model"])
        return HttpResponse(200, b"", None)

    # ---- KServe V1 ----------------------------------------------------------------------------
    async def _v1_models(self, req: HttpRequest) -> HttpResponse:
        entries = await self._dataplane.repository_index(ready_only=False)
        return HttpResponse.json({"models": sorted({e.name for e in entries})})

    async def _v1_model(self, req: HttpRequest) -> HttpResponse:
        name = req.params["model"]
        ready = await self._dataplane.model_ready(name)
        if not ready:
            await self._dataplane.model_metadata(name)  # an unknown model is a 404, as in KServe
        return HttpResponse.json({"name": name, "ready": ready})

    async def _v1_predict(self, req: HttpRequest) -> HttpResponse:
        name, verb = v1.split_verb(req.params["model"])
        if verb != v1.PREDICT_VERB:
            raise InvalidInputError(f"V1 verb {verb!r} is not supported (only :predict)")
        ctx = self._context(req.headers, None, {})
        with tracing.start_span(tracing.SPAN_HTTP, ctx, server=True):
            body = await v1.predict(self._dataplane, name, req.body, ctx, self._max_elements)
        headers = [(REQUEST_ID_HEADER, ctx.request_id)]
        if ctx.route is not None:  # set by the traffic layer for endpoints, as in V2
            headers.append((ROUTE_HEADER, ctx.route))
        return HttpResponse(200, body, headers=headers)


def _admin_only(route: Route, auth: AdminAuth) -> Route:
    """``route`` with the admin token checked before its handler runs (composed once)."""
    handler = route.handler

    async def checked(req: HttpRequest) -> HttpResponse:
        auth.check(req.headers.get(AUTHORIZATION))
        return await handler(req)

    return dataclasses.replace(route, handler=checked)


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _new_request_id() -> str:
    """32 hex digits like ``uuid4().hex``: a per-process random half and a counter (no syscall)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _header_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get(INFERENCE_HEADER)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):  # isdigit alone admits "²"
        raise InvalidInputError(
            f"Inference-Header-Content-Length must be a non-negative integer, got {value!r}"
        )
    return int(value)


def _optional_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    doc = load_json(body, "request body")
    if not isinstance(doc, dict):
        raise InvalidInputError("request body must be a JSON object")
    return doc


def _tensor_doc(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype.value, "shape": list(spec.shape)}


def _metadata_doc(meta: ModelMetadata) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [_tensor_doc(s) for s in meta.inputs],
        "outputs": [_tensor_doc(s) for s in meta.outputs],
    }
    if meta.parameters:
        doc["parameters"] = meta.parameters
    return doc
