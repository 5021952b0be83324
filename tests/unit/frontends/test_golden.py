"""The golden V2 payload cases of tests/conformance/golden through the REST app + FakeDataPlane."""

from __future__ import annotations

import orjson
import pytest

from tests.conformance.golden.cases import GoldenCase, check_response, load_cases
from tests.unit.frontends.conftest import Client

CASES = load_cases()


def test_the_golden_directory_has_the_required_cases() -> None:
    names = {case.name for case in CASES}
    assert {
        "identity_fp32",
        "identity_int64",
        "identity_bytes",
        "identity_bool",
        "simple_requested_output",
        "error_wrong_shape",
        "error_unknown_model",
    } <= names


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_golden_case_through_rest(client: Client, case: GoldenCase) -> None:
    response = client.post(
        case.rest_path,
        content=orjson.dumps(case.body),
        headers={"Content-Type": "application/json"},
    )
    check_response(case, response.status_code, response.json())


def test_the_checker_rejects_wrong_answers() -> None:
    case = next(c for c in CASES if c.name == "simple_int32")
    good = {"model_name": "simple", "model_version": "1", "outputs": case.expected["outputs"]}
    check_response(case, 200, good)
    wrong_value = orjson.loads(orjson.dumps(good))
    wrong_value["outputs"][0]["data"][3] += 1
    missing = {**good, "outputs": good["outputs"][:1]}
    for doc, status in ((wrong_value, 200), (missing, 200), (good, 400)):
        with pytest.raises(AssertionError):
            check_response(case, status, doc)
