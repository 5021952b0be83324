"""The one table from ModelYard errors to HTTP statuses, and the ``{"error": ...}`` body.

Choices, for clients of KServe/Triton (``tritonclient`` raises ``InferenceServerException`` on any
non-200, carrying the status and the ``error`` text, so the status only has to be honest):

* ``INVALID_ARGUMENT`` and ``FAILED_PRECONDITION`` are 400, as the Open Inference Protocol says
  ("typically 400") and Triton does; 412 is about HTTP conditional headers, not model state.
* ``RESOURCE_EXHAUSTED`` depends on the exception class: a request body or tensor over the limits
  (:class:`~modelyard.errors.PayloadTooLargeError`) is 413; a model bigger than the whole model
  cache (:class:`~modelyard.errors.ModelTooLargeError`) is 507, a server-side capacity problem a
  retry does not fix; any other exhaustion (overload, load shedding, quotas) is 429.
* Health answers "false" with 400 and an empty body: the protocol asks for a 4xx, Triton uses 400,
  and Kubernetes probes treat every status >= 400 as a failure.
* Anything that is not a :class:`~modelyard.errors.ModelYardError` is a bug: 500 with a generic
  message (the details go to the log, not to the client).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import orjson

from modelyard.errors import ErrorCode, ModelTooLargeError, ModelYardError, PayloadTooLargeError

STATUS_BY_CODE: Final[Mapping[ErrorCode, int]] = MappingProxyType(
    {
        ErrorCode.INVALID_ARGUMENT: 400,
        ErrorCode.NOT_FOUND: 404,
        ErrorCode.ALREADY_EXISTS: 409,
        ErrorCode.FAILED_PRECONDITION: 400,
        ErrorCode.PERMISSION_DENIED: 403,
        ErrorCode.UNAUTHENTICATED: 401,
        ErrorCode.RESOURCE_EXHAUSTED: 429,
        ErrorCode.UNAVAILABLE: 503,
        ErrorCode.DEADLINE_EXCEEDED: 504,
        ErrorCode.INTERNAL: 500,
    }
)
"""HTTP status for each error code, unless the exception class has its own entry below."""

STATUS_BY_CLASS: Final[tuple[tuple[type[ModelYardError], int], ...]] = (
    (PayloadTooLargeError, 413),
    (ModelTooLargeError, 507),
)
"""Classes whose status is more specific than their code's (checked first, in order)."""

HEALTH_FALSE_STATUS: Final = 400
"""Status of a health or readiness check that answers "no"."""

INTERNAL_MESSAGE: Final = "internal server error"


def http_status(exc: ModelYardError) -> int:
    """The HTTP status for a ModelYard error."""
    for cls, status in STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    return STATUS_BY_CODE.get(exc.code, 500)


def error_body(message: str) -> bytes:
    """The Open Inference Protocol error object ``{"error": message}`` as JSON bytes."""
    return orjson.dumps({"error": message})


def error_response(exc: BaseException) -> tuple[int, bytes]:
    """Status and body for any exception; unknown ones get a generic 500 message."""
    if isinstance(exc, ModelYardError):
        return http_status(exc), error_body(exc.message)
    return 500, error_body(INTERNAL_MESSAGE)
