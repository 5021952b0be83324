"""The one table from ModelYard's transport-neutral :class:`~modelyard.errors.ErrorCode` to gRPC
status codes. Every gRPC handler maps errors through :func:`status_for`; nothing else decides."""

from __future__ import annotations

from types import MappingProxyType

import grpc

from modelyard.errors import ErrorCode, ModelYardError

GRPC_STATUS: MappingProxyType[ErrorCode, grpc.StatusCode] = MappingProxyType(
    {
        ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
        ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
        ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
        ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
        ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
        ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
        ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
        ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
        ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    }
)


def status_for(error: ModelYardError) -> grpc.StatusCode:
    """The gRPC status code that reports ``error`` to a client."""
    return GRPC_STATUS.get(error.code, grpc.StatusCode.INTERNAL)
