"""ASGI plumbing for the REST frontend: request/response types, a precompiled router, body
reading with limits and decompression. Knows HTTP, not the inference protocol."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelyard.errors import InvalidInputError, PayloadTooLargeError
from modelyard.frontends.http_errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON_CONTENT = "application/json"
OCTET_STREAM = "application/octet-stream"


@dataclass(slots=True)
class HttpRequest:
    """What a route handler sees. ``headers`` has lower-case names; ``body`` is decompressed."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    query_string: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    """What a route handler returns. ``content_type=None`` sends no Content-Type (empty body)."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = JSON_CONTENT
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, doc: Any, status: int = 200) -> HttpResponse:
        return cls(status, orjson.dumps(doc))


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """A route: ``method`` (GET, POST, ...), ``path`` with ``{param}`` segments, async handler.
    HEAD is answered by the GET handler, without the body.

    ``mutating``: whether the route changes server state, and so needs the admin token when
    ``settings.admin_token`` is set; None (the default) means any method but GET and HEAD does.
    Only reads sent as POST (inference, the repository index) say False."""

    method: str
    path: str
    handler: Handler
    mutating: bool | None = None

    @property
    def changes_state(self) -> bool:
        if self.mutating is None:
            return self.method not in ("GET", "HEAD")
        return self.mutating


class Router:
    """Precompiled routes: static paths in a dict; the others grouped by segment count and
    matched by comparing their literal segments (no regular expressions)."""

    _CACHE_SIZE = 4096

    def __init__(self, routes: Iterable[Route]) -> None:
        self._static: dict[str, dict[str, Handler]] = {}
        self._dynamic: dict[int, list[_Pattern]] = {}
        # Hot paths (one per served model) repeat: remember their matches.
        self._cache: dict[tuple[str, str], tuple[Handler, dict[str, str]]] = {}
        for route in routes:
            self._add(route)

    def _add(self, route: Route) -> None:
        parts = route.path.rstrip("/").split("/")
        if not route.path.startswith("/") or "" in parts[1:]:
            raise ValueError(f"route path {route.path!r} must be /-separated, non-empty segments")
        params = tuple((i, p[1:-1]) for i, p in enumerate(parts) if p.startswith("{"))
        if not params:
            methods = self._static.setdefault("/".join(parts), {})
        else:
            literals = tuple((i, p) for i, p in enumerate(parts) if not p.startswith("{"))
            group = self._dynamic.setdefault(len(parts), [])
            found = next((p for p in group if p.literals == literals), None)
            if found is None:
                found = _Pattern(literals, params, {})
                group.append(found)
            methods = found.methods
        if route.method in methods:
            raise ValueError(f"route {route.method} {route.path} is defined twice")
        methods[route.method] = route.handler

    def match(
        self, method: str, path: str
    ) -> tuple[Handler | None, dict[str, str], tuple[str, ...]]:
        """(handler, path params, ()) on a match; (None, {}, allowed methods) otherwise."""
        hit = self._cache.get((method, path))
        if hit is not None:
            return hit[0], dict(hit[1]), ()
        found = self._match(method, path)
        if found[0] is not None:
            if len(self._cache) >= self._CACHE_SIZE:
                self._cache.clear()
            self._cache[method, path] = (found[0], dict(found[1]))
        return found

    def _match(
        self, method: str, path: str
    ) -> tuple[Handler | None, dict[str, str], tuple[str, ...]]:
        if len(path) > 1 and path[-1] == "/":
            path = path[:-1]
        params: dict[str, str] = {}
        methods = self._static.get(path)
        if methods is None:
            parts = path.split("/")
            for pattern in self._dynamic.get(len(parts), ()):
                if all(parts[i] == lit for i, lit in pattern.literals):
                    params = {name: parts[i] for i, name in pattern.params}
                    if all(params.values()):
                        methods = pattern.methods
                        break
            if methods is None:
                return None, {}, ()
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            return None, {}, tuple(methods)
        return handler, params, ()


@dataclass(slots=True)
class _Pattern:
    literals: tuple[tuple[int, str], ...]
    params: tuple[tuple[int, str], ...]
    methods: dict[str, Handler]


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes | None:
    """The request body, decompressed, at most ``limit`` bytes; None if the client left."""
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get("content-encoding")
    if encoding is None or (encoding := encoding.strip().lower()) == "identity":
        return body
    return _decompress(body, encoding, limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = {"gzip": 31, "deflate": 15}.get(encoding)
    if wbits is None:
        raise InvalidInputError(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"request body is not valid {encoding} data: {exc}") from exc
    if len(data) > limit:
        raise PayloadTooLargeError(f"decompressed request body exceeds {limit} bytes")
    if not inflater.eof:
        raise InvalidInputError(f"request body is truncated {encoding} data")
    return data


async def send_response(send: Send, response: HttpResponse, *, head: bool, close: bool) -> None:
    """Send ``response``; ``close`` asks the client to drop the connection (draining)."""
    body = response.body
    headers = [(b"content-length", b"%d" % len(body))]
    if response.content_type is not None:
        headers.append((b"content-type", response.content_type.encode("latin-1")))
    for name, value in response.headers:
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def no_route(method: str, path: str, allowed: tuple[str, ...]) -> HttpResponse:
    if allowed:
        body = error_body(f"method {method} is not allowed on {path}")
        return HttpResponse(405, body, headers=[("allow", ", ".join(allowed))])
    return HttpResponse(404, error_body(f"no route for {path}"))


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
