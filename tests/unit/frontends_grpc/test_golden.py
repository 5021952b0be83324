"""The transport-neutral golden payloads of tests/conformance/golden, sent over gRPC.

Each JSON request becomes a ``ModelInferRequest`` with typed ``contents`` (FP16 goes raw, as the
golden README says); the answer is turned back into a V2 JSON-shaped dict and checked by the
golden module's own ``check_response``. The conversion both ways is the conformance runner's
(``tests/conformance/golden_runner.py``), so this fast in-process run and the real-server run
send the same messages.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from tests.conformance.golden.cases import GoldenCase, check_response, load_cases
from tests.conformance.golden_runner import run_grpc
from tests.unit.frontends_grpc.conftest import RunningServer

pytestmark = pytest.mark.conformance

CASES = load_cases()


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.url) as ch:
        yield ch


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden_case_over_grpc(channel: grpc.Channel, case: GoldenCase) -> None:
    status, doc = run_grpc(case, channel, raw=False)
    check_response(case, status, doc)
