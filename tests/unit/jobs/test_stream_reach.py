"""A broker that cannot be reached when ``modelyard stream`` opens it is one error naming the
flag and URL (the CLI prints it as one line), not the client library's traceback."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.errors import InvalidInputError, UnavailableError
from modelyard.jobs.stream_run import _reached


async def refused() -> None:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")


async def bad_url() -> None:
    raise InvalidInputError("--source: unknown scheme 'foo'")


async def opened() -> str:
    return "broker"


def test_an_unreachable_broker_is_named_with_its_flag() -> None:
    with pytest.raises(UnavailableError) as info:
        asyncio.run(_reached("--source", "redis://127.0.0.1:1/0?stream=s", refused()))
    assert info.value.message == (
        "--source redis://127.0.0.1:1/0?stream=s: cannot reach the broker: "
        "[Errno 111] Connect call failed ('127.0.0.1', 1)"
    )


def test_our_own_errors_and_results_pass_through() -> None:
    with pytest.raises(InvalidInputError, match="unknown scheme"):
        asyncio.run(_reached("--source", "foo://x", bad_url()))
    assert asyncio.run(_reached("--sink", "redis://x", opened())) == "broker"
