"""The ErrorCode -> gRPC status table."""

from __future__ import annotations

import grpc
import pytest

from modelyard import errors
from modelyard.frontends.grpc_errors import GRPC_STATUS, status_for


def test_every_error_code_has_a_status() -> None:
    assert set(GRPC_STATUS) == set(errors.ErrorCode)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.InvalidNameError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.PayloadTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
        (errors.ChecksumMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.UnsafeArtifactError, grpc.StatusCode.PERMISSION_DENIED),
        (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
        (errors.ModelLoadError, grpc.StatusCode.UNAVAILABLE),
        (errors.ModelTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.InferenceError, grpc.StatusCode.INTERNAL),
        (errors.ModelYardError, grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for(error: type[errors.ModelYardError], status: grpc.StatusCode) -> None:
    assert status_for(error("boom")) is status
