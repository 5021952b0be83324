"""The endpoint management REST API, mounted beside the V2 routes.

* ``GET /v2/endpoints`` -> ``{"endpoints": [record, ...]}``
* ``GET /v2/endpoints/{name}`` -> record
* ``PUT /v2/endpoints/{name}`` with a JSON spec (``name`` may be left out) -> record; 201 when
  created, 200 when replaced; 400 listing every problem, 404 naming unknown models
* ``DELETE /v2/endpoints/{name}`` -> ``{"deleted": name}``

A record is ``{"name", "revision", "created_at", "updated_at", "spec"}``. Changes take effect in
this process at once and in every other replica within ``watch_interval_s``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modelyard.errors import InvalidInputError
from modelyard.frontends.asgi import HttpRequest, HttpResponse, Route
from modelyard.frontends.codec import load_json
from modelyard.registry.endpoints import EndpointStore
from modelyard.traffic.dataplane import TrafficDataPlane

PREFIX = "/v2/endpoints"


def management_routes(store: EndpointStore, traffic: TrafficDataPlane) -> list[Route]:
    """The four routes of the endpoint management API."""

    async def list_endpoints(req: HttpRequest) -> HttpResponse:
        records = await asyncio.to_thread(store.list)
        return HttpResponse.json({"endpoints": [r.to_doc() for r in records]})

    async def get_endpoint(req: HttpRequest) -> HttpResponse:
        record = await asyncio.to_thread(store.get, req.params["name"])
        return HttpResponse.json(record.to_doc())

    async def put_endpoint(req: HttpRequest) -> HttpResponse:
        spec = _spec_body(req.body, req.params["name"])
        record = await asyncio.to_thread(store.apply, spec)
        traffic.upsert(record)
        return HttpResponse.json(record.to_doc(), status=201 if record.revision == 1 else 200)

    async def delete_endpoint(req: HttpRequest) -> HttpResponse:
        name = req.params["name"]
        await asyncio.to_thread(store.delete, name)
        traffic.remove(name)
        return HttpResponse.json({"deleted": name})

    one = f"{PREFIX}/{{name}}"
    return [
        Route("GET", PREFIX, list_endpoints),
        Route("GET", one, get_endpoint),
        Route("PUT", one, put_endpoint),
        Route("DELETE", one, delete_endpoint),
    ]


def _spec_body(body: bytes, name: str) -> dict[str, Any]:
    doc = load_json(body, "endpoint spec")
    if not isinstance(doc, dict):
        raise InvalidInputError("endpoint spec: the request body must be a JSON object")
    given = doc.setdefault("name", name)
    if given != name:
        raise InvalidInputError(
            f"endpoint spec: name {given!r} in the body differs from {name!r} in the path"
        )
    return doc
