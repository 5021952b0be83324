"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for the load test.

A general-purpose client would cost more CPU per request than the servers it measures; this one
sends one prebuilt request and reads Content-Length, chunked or until-EOF responses.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import orjson

from modelyard.errors import InvalidInputError


class Writer(Protocol):
    """The part of :class:`asyncio.StreamWriter` the load test uses."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, Writer]]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes: ``host:port`` and the infer path of the model."""

    host: str
    port: int
    path: str
    tls: bool

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str, model: str) -> Target:
    """The target for ``model`` on the server at ``url`` (``http://host:port[/prefix]``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"url must look like http://host:port, got {url!r}")
    if parts.query or parts.fragment:
        raise InvalidInputError(f"url must not have a query or fragment, got {url!r}")
    if not model or "/" in model:
        raise InvalidInputError(f"model must be a model name without '/', got {model!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInputError(f"url has an invalid port: {url!r}") from exc
    prefix = parts.path.rstrip("/")
    path = f"{prefix}/v2/models/{quote(model, safe='')}/infer"
    return Target(parts.hostname, port, path, parts.scheme == "https")


def encode_payload(payload: bytes | str | Mapping[str, Any]) -> bytes:
    """The request body: a V2 JSON request given as bytes, text or a mapping."""
    if isinstance(payload, Mapping):
        body = orjson.dumps(dict(payload))
    elif isinstance(payload, str):
        body = payload.encode()
    else:
        body = bytes(payload)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("inputs"), list):
        raise InvalidInputError('payload must be a V2 request: a JSON object with an "inputs" list')
    return body


def build_request(target: Target, body: bytes) -> bytes:
    head = (
        f"POST {target.path} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response this client understands."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    keep_alive: bool


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one HTTP/1.1 response (Content-Length, chunked, or until EOF)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line {lines[0][:80]!r}")
    try:
        status = int(status_line[1])
    except ValueError as exc:
        raise ProtocolError(f"bad status code in {lines[0][:80]!r}") from exc
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    keep_alive = status_line[0] == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != (
        b"close"
    )
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return Response(status, await _read_chunked(reader), keep_alive)
    if b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError as exc:
            raise ProtocolError("bad Content-Length") from exc
        return Response(status, await reader.readexactly(length), keep_alive)
    if status in (204, 304) or 100 <= status < 200:
        return Response(status, b"", keep_alive)
    return Response(status, await reader.read(), False)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise ProtocolError(f"bad chunk size {size_line[:40]!r}") from exc
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


def connector(target: Target) -> Connect:
    """A :data:`Connect` that opens a new TCP (or TLS) connection to ``target``."""
    context = ssl.create_default_context() if target.tls else None

    async def connect() -> tuple[asyncio.StreamReader, Writer]:
        return await asyncio.open_connection(target.host, target.port, ssl=context)

    return connect
