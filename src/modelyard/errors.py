"""Transport-neutral errors.

Every error carries an :class:`ErrorCode`; each frontend holds one table mapping codes to its
wire status (HTTP status, gRPC status code). Nothing here imports a web or gRPC library. Foreign
exceptions are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


class ModelYardError(Exception):
    """Base of every error ModelYard raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(ModelYardError):
    """The request (or an argument) is malformed or does not fit the model's signature."""

    code = ErrorCode.INVALID_ARGUMENT


class InvalidNameError(InvalidInputError):
    """A model, alias or endpoint name breaks the naming rules."""


class PayloadTooLargeError(InvalidInputError):
    """The request body or a tensor is larger than the configured limits."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class NotFoundError(ModelYardError):
    code = ErrorCode.NOT_FOUND


class ModelNotFoundError(NotFoundError):
    """No such model, version or alias."""


class RegistryNotFoundError(NotFoundError):
    """No registry at that URL, and the caller asked not to create one."""


class AlreadyExistsError(ModelYardError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPreconditionError(ModelYardError):
    code = ErrorCode.FAILED_PRECONDITION


class UnsafeArtifactError(FailedPreconditionError):
    """Loading this artifact would execute untrusted code (pickle/joblib) without an opt-in."""

    code = ErrorCode.PERMISSION_DENIED


class PickleRefusedError(UnsafeArtifactError):
    """A push met a pickle/joblib file without the ``allow_pickle`` opt-in; ``file`` names it
    (so that each front end can name its own opt-in: an argument, a flag)."""

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


class ChecksumMismatchError(FailedPreconditionError):
    """A file of a version does not match the sha256 recorded at push; the version is not served."""


class MissingDependencyError(FailedPreconditionError):
    """An optional engine is not installed; the message carries the install hint."""


class UnauthenticatedError(ModelYardError):
    """A management call without the admin credential (``settings.admin_token``), or a wrong one."""

    code = ErrorCode.UNAUTHENTICATED


class UnavailableError(ModelYardError):
    """The server or model cannot serve now (loading, overloaded, shutting down)."""

    code = ErrorCode.UNAVAILABLE


class ModelTooLargeError(ModelYardError):
    """A model does not fit the model cache's byte budget even when the cache is empty."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class ModelLoadError(UnavailableError):
    """A model failed to load; the failure is cached briefly and reported to every caller."""


class DeadlineExceededError(ModelYardError):
    code = ErrorCode.DEADLINE_EXCEEDED


class InferenceError(ModelYardError):
    """The runtime raised while predicting."""

    code = ErrorCode.INTERNAL


def install_hint(package: str, extra: str) -> MissingDependencyError:
    """The error to raise when an optional engine is missing."""
    return MissingDependencyError(
        f"{package} is not installed; install it with: pip install 'modelyard[{extra}]'"
    )
