"""The golden V2 payload cases (tests/conformance/golden/) against the real server, over REST
(JSON and binary) and gRPC (typed contents and raw), each answer checked by the golden checker."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from tests.conformance.golden.cases import GoldenCase, check_response, load_cases
from tests.conformance.golden_runner import TRANSPORTS, run_case
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.conformance

CASES = load_cases()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_url) as ch:
        yield ch


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 10
    assert any(c.is_error for c in CASES) and any(not c.is_error for c in CASES)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(
    http: httpx.Client, channel: grpc.Channel, case: GoldenCase, transport: str
) -> None:
    status, doc = run_case(transport, case, http, channel)
    check_response(case, status, doc)
