"""The error -> HTTP status table."""

from __future__ import annotations

import orjson
import pytest

from modelyard import errors
from modelyard.frontends.http_errors import STATUS_BY_CODE, error_response, http_status


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidInputError("x"), 400),
        (errors.InvalidNameError("x"), 400),
        (errors.PayloadTooLargeError("x"), 413),
        (errors.ModelNotFoundError("x"), 404),
        (errors.AlreadyExistsError("x"), 409),
        (errors.FailedPreconditionError("x"), 400),
        (errors.ChecksumMismatchError("x"), 400),
        (errors.MissingDependencyError("x"), 400),
        (errors.UnsafeArtifactError("x"), 403),
        (errors.UnavailableError("x"), 503),
        (errors.ModelLoadError("x"), 503),
        (errors.ModelTooLargeError("x"), 507),
        (errors.DeadlineExceededError("x"), 504),
        (errors.InferenceError("x"), 500),
        (errors.ModelYardError("x"), 500),
    ],
)
def test_status_of_every_error_class(exc: errors.ModelYardError, status: int) -> None:
    assert http_status(exc) == status


def test_every_code_has_a_status() -> None:
    assert set(STATUS_BY_CODE) == set(errors.ErrorCode)


def test_other_resource_exhaustion_is_429() -> None:
    class Overloaded(errors.ModelYardError):
        code = errors.ErrorCode.RESOURCE_EXHAUSTED

    assert http_status(Overloaded("queue full")) == 429


def test_error_bodies() -> None:
    assert error_response(errors.ModelNotFoundError('no "m"')) == (
        404,
        orjson.dumps({"error": 'no "m"'}),
    )
    assert error_response(KeyError("secret")) == (500, b'{"error":"internal server error"}')
