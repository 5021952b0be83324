import asyncio

import pytest

from modelyard.bench.httpclient import (
    ProtocolError,
    Response,
    Target,
    build_request,
    encode_payload,
    parse_target,
    read_response,
)
from modelyard.errors import InvalidInputError


@pytest.mark.parametrize(
    ("url", "model", "target", "host_header"),
    [
        (
            "http://127.0.0.1:8080",
            "m",
            Target("127.0.0.1", 8080, "/v2/models/m/infer", False),
            "127.0.0.1:8080",
        ),
        ("http://h/", "m", Target("h", 80, "/v2/models/m/infer", False), "h"),
        ("https://h/prefix/", "a b", Target("h", 443, "/prefix/v2/models/a%20b/infer", True), "h"),
        ("http://[::1]:9", "m", Target("::1", 9, "/v2/models/m/infer", False), "[::1]:9"),
    ],
)
def test_parse_target(url: str, model: str, target: Target, host_header: str) -> None:
    assert parse_target(url, model) == target
    assert target.host_header == host_header


@pytest.mark.parametrize(
    ("url", "model", "match"),
    [
        ("127.0.0.1:8080", "m", "url must look like"),
        ("ftp://h", "m", "url must look like"),
        ("http://h?x=1", "m", "query or fragment"),
        ("http://h:99999", "m", "invalid port"),
        ("http://h", "", "model must be"),
        ("http://h", "a/b", "model must be"),
    ],
)
def test_bad_target_names_the_argument(url: str, model: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_target(url, model)


def test_encode_payload_accepts_bytes_text_and_mappings() -> None:
    expected = b'{"inputs":[]}'
    assert encode_payload(expected) == expected
    assert encode_payload(expected.decode()) == expected
    assert encode_payload({"inputs": []}) == expected


@pytest.mark.parametrize(
    ("payload", "match"),
    [("{", "not valid JSON"), ("[]", "V2 request"), ('{"inputs": {}}', "V2 request")],
)
def test_encode_payload_rejects_non_v2_bodies(payload: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        encode_payload(payload)


def test_build_request() -> None:
    target = parse_target("http://h:1", "m")
    assert build_request(target, b"{}") == (
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: h:1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )


def read(raw: bytes, eof: bool = True) -> Response:
    async def go() -> Response:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        if eof:
            reader.feed_eof()
        return await read_response(reader)

    return asyncio.run(go())


def test_content_length_response() -> None:
    resp = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello+next")
    assert resp == Response(200, b"hello", True)


def test_chunked_response_with_trailer() -> None:
    raw = (
        b"HTTP/1.1 500 Internal\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
    )
    assert read(raw) == Response(500, b"abcde", True)


@pytest.mark.parametrize(
    ("raw", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    ],
)
def test_keep_alive(raw: bytes, keep_alive: bool) -> None:
    assert read(raw).keep_alive is keep_alive


def test_response_without_length_reads_to_eof() -> None:
    assert read(b"HTTP/1.1 200 OK\r\n\r\nall of it") == Response(200, b"all of it", False)


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_responses_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read(raw)


def test_truncated_response_raises_incomplete_read() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
