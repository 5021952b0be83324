"""The gRPC frontend: ``inference.GRPCInferenceService`` of the Open Inference Protocol V2.

Wire-compatible with Triton's service, so the official ``tritonclient.grpc`` client works
unchanged. Each handler decodes the protobuf request, calls the :class:`DataPlane`, encodes the
result and maps :class:`ModelYardError` codes to gRPC status codes (``grpc_errors``). Triton's
shared-memory, trace and log RPCs are not registered, which gRPC reports as UNIMPLEMENTED.
With ``settings.admin_token`` set, ``RepositoryModelLoad``/``Unload`` need the metadata
``authorization: Bearer <token>`` (else UNAUTHENTICATED; :mod:`modelyard.frontends.admin_auth`).

Usage (the composition root owns the lifecycle)::

    server, port = create_grpc_server(dataplane, settings)
    await server.start()
    ...
    await server.stop(grace)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from modelyard.core.clock import SYSTEM_CLOCK, Clock
from modelyard.core.dataplane import DataPlane
from modelyard.errors import InvalidInputError, ModelYardError, UnavailableError
from modelyard.frontends import grpc_codec as codec
from modelyard.frontends.admin_auth import AUTHORIZATION, AdminAuth
from modelyard.frontends.grpc_errors import status_for
from modelyard.frontends.proto import grpc_service_pb2 as pb
from modelyard.monitoring import tracing
from modelyard.settings import Settings
from modelyard.types import InferRequest, RequestContext

logger = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
ROUTING_KEY_METADATA = "x-modelyard-key"
"""Invocation metadata key whose value makes traffic choices sticky (RequestContext.routing_key)."""

# Responses are bounded by what models produce, not by the request limit; gRPC's own ceiling.
_MAX_SEND_BYTES = 2**31 - 1
_INTERNAL_DETAILS = "internal server error; the server log has the details"
# Load/unload parameters Triton clients send that need no action here.
_IGNORED_UNLOAD_PARAMS = frozenset({"unload_dependents"})

Ctx = grpc.aio.ServicerContext[Any, Any]
_Behaviour = Callable[[Any, Ctx], Awaitable[Any]]


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message, so the handler can answer
    INVALID_ARGUMENT (gRPC itself would report a failed deserialization as INTERNAL)."""

    def __init__(self, message_name: str, error: str) -> None:
        self.details = f"the request is not a valid {message_name}: {error}"


def _deserializer(message: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            return _Undecodable(message.DESCRIPTOR.name, str(exc))

    return parse


def _guarded(method: str, handler: _Behaviour) -> _Behaviour:
    """Run ``handler``; report ModelYardError by its code and anything else as INTERNAL."""

    async def behaviour(request: Any, context: Ctx) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)
        try:
            return await handler(request, context)
        except grpc.aio.AbortError:
            raise
        except ModelYardError as exc:
            code, details = status_for(exc), exc.message
        except Exception:
            logger.exception("gRPC %s failed unexpectedly", method)
            code, details = grpc.StatusCode.INTERNAL, _INTERNAL_DETAILS
        await context.abort(code, details)

    return behaviour


def _require_name(name: str, field: str) -> str:
    if not name:
        raise InvalidInputError(f"{field} is required")
    return name


class GrpcInferenceService:
    """The handlers of ``inference.GRPCInferenceService``; each only translates and delegates."""

    def __init__(self, dataplane: DataPlane, settings: Settings, clock: Clock = SYSTEM_CLOCK):
        self._dataplane = dataplane
        self._settings = settings
        self._clock = clock
        self._admin = AdminAuth(settings.admin_token)

    # ---- health and metadata ----------------------------------------------------------------
    async def server_live(
        self, request: pb.ServerLiveRequest, context: Ctx
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._dataplane.live())

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Ctx
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dataplane.ready())

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Ctx
    ) -> pb.ModelReadyResponse:
        name = _require_name(request.name, "name")
        ready = await self._dataplane.model_ready(name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Ctx
    ) -> pb.ServerMetadataResponse:
        meta = self._dataplane.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta.name, version=meta.version, extensions=list(meta.extensions)
        )

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Ctx
    ) -> pb.ModelMetadataResponse:
        name = _require_name(request.name, "name")
        meta = await self._dataplane.model_metadata(name, request.version or None)
        return codec.encode_model_metadata(meta)

    async def model_config(
        self, request: pb.ModelConfigRequest, context: Ctx
    ) -> pb.ModelConfigResponse:
        name = _require_name(request.name, "name")
        config = await self._dataplane.model_config(name, request.version or None)
        return codec.encode_model_config(config)

    async def model_statistics(
        self, request: pb.ModelStatisticsRequest, context: Ctx
    ) -> pb.ModelStatisticsResponse:
        """An empty name asks for every model (then the version must be empty too)."""
        stats = await self._dataplane.model_statistics(
            request.name or None, request.version or None
        )
        return codec.encode_model_statistics(stats)

    # ---- inference --------------------------------------------------------------------------
    async def model_infer(
        self, request: pb.ModelInferRequest, context: Ctx
    ) -> pb.ModelInferResponse:
        return await self._infer(request, context)

    async def model_stream_infer(
        self, requests: AsyncIterator[Any], context: Ctx
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """One response per request, in order. A failed request is reported in-stream
        (``error_message``, as Triton does) and the stream goes on."""
        async for request in requests:
            try:
                if isinstance(request, _Undecodable):
                    raise InvalidInputError(request.details)
                response = await self._infer(request, context)
            except ModelYardError as exc:
                yield pb.ModelStreamInferResponse(error_message=exc.message)
            except Exception:
                logger.exception("gRPC ModelStreamInfer request failed unexpectedly")
                yield pb.ModelStreamInferResponse(error_message=_INTERNAL_DETAILS)
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)

    async def _infer(self, request: pb.ModelInferRequest, context: Ctx) -> pb.ModelInferResponse:
        name = _require_name(request.model_name, "model_name")
        decoded = codec.decode_infer_request(
            request, max_tensor_elements=self._settings.max_tensor_elements
        )
        ctx = self._request_context(decoded, context)
        with tracing.start_span(tracing.SPAN_GRPC, ctx, server=True):  # continues a traceparent
            response = await self._dataplane.infer(
                name, request.model_version or None, decoded, ctx
            )
            return codec.encode_infer_response(response, request.id)

    def _request_context(self, request: InferRequest, context: Ctx) -> RequestContext:
        """Deadline = the earliest of the gRPC deadline and the ``timeout`` parameter
        (microseconds, as in Triton; 0 = none), else ``settings.default_timeout_s``."""
        budgets: list[float] = []
        remaining: float | None = context.time_remaining()
        if remaining is not None:
            budgets.append(remaining)
        timeout_us = request.parameters.pop("timeout", None)
        if timeout_us is not None:
            if isinstance(timeout_us, bool) or not isinstance(timeout_us, int) or timeout_us < 0:
                raise InvalidInputError(
                    "parameter 'timeout' must be a non-negative integer (microseconds)"
                )
            if timeout_us > 0:
                budgets.append(timeout_us / 1e6)
        if not budgets and self._settings.default_timeout_s is not None:
            budgets.append(self._settings.default_timeout_s)
        metadata = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        return RequestContext(
            request_id=request.id or uuid.uuid4().hex,
            deadline=self._clock.monotonic() + min(budgets) if budgets else None,
            routing_key=metadata.get(ROUTING_KEY_METADATA) or None,
            headers=metadata,
        )

    # ---- repository -------------------------------------------------------------------------
    async def repository_index(
        self, request: pb.RepositoryIndexRequest, context: Ctx
    ) -> pb.RepositoryIndexResponse:
        entries = await self._dataplane.repository_index(ready_only=request.ready)
        return codec.encode_repository_index(entries)

    async def repository_model_load(
        self, request: pb.RepositoryModelLoadRequest, context: Ctx
    ) -> pb.RepositoryModelLoadResponse:
        self._check_admin(context)
        name = _require_name(request.model_name, "model_name")
        params = codec.decode_parameters(request.parameters, "RepositoryModelLoad")
        if params:
            raise InvalidInputError(
                f"RepositoryModelLoad parameters {sorted(params)} are not supported: "
                "ModelYard loads versions from its registry, with no config or file overrides"
            )
        await self._dataplane.load_model(name)
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(
        self, request: pb.RepositoryModelUnloadRequest, context: Ctx
    ) -> pb.RepositoryModelUnloadResponse:
        self._check_admin(context)
        name = _require_name(request.model_name, "model_name")
        params = codec.decode_parameters(request.parameters, "RepositoryModelUnload")
        unknown = sorted(set(params) - _IGNORED_UNLOAD_PARAMS)
        if unknown:
            raise InvalidInputError(f"RepositoryModelUnload parameters {unknown} are not supported")
        await self._dataplane.unload_model(name)
        return pb.RepositoryModelUnloadResponse()

    def _check_admin(self, context: Ctx) -> None:
        """Calls that change state carry ``authorization: Bearer <admin_token>`` when it is set."""
        if self._admin.enabled:
            given = [v for k, v in context.invocation_metadata() or () if k == AUTHORIZATION]
            self._admin.check(given[0] if given and isinstance(given[0], str) else None)

    # ---- registration -----------------------------------------------------------------------
    def generic_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The handler table to add to a ``grpc.aio.Server``."""
        unary: dict[str, tuple[_Behaviour, Any, Any]] = {
            "ServerLive": (self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": (self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": (self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": (
                self.server_metadata,
                pb.ServerMetadataRequest,
                pb.ServerMetadataResponse,
            ),
            "ModelMetadata": (
                self.model_metadata,
                pb.ModelMetadataRequest,
                pb.ModelMetadataResponse,
            ),
            "ModelInfer": (self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelConfig": (self.model_config, pb.ModelConfigRequest, pb.ModelConfigResponse),
            "ModelStatistics": (
                self.model_statistics,
                pb.ModelStatisticsRequest,
                pb.ModelStatisticsResponse,
            ),
            "RepositoryIndex": (
                self.repository_index,
                pb.RepositoryIndexRequest,
                pb.RepositoryIndexResponse,
            ),
            "RepositoryModelLoad": (
                self.repository_model_load,
                pb.RepositoryModelLoadRequest,
                pb.RepositoryModelLoadResponse,
            ),
            "RepositoryModelUnload": (
                self.repository_model_unload,
                pb.RepositoryModelUnloadRequest,
                pb.RepositoryModelUnloadResponse,
            ),
        }
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                _guarded(method, behaviour),
                request_deserializer=_deserializer(request_type),
                response_serializer=response_type.SerializeToString,
            )
            for method, (behaviour, request_type, response_type) in unary.items()
        }
        handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            self.model_stream_infer,
            request_deserializer=_deserializer(pb.ModelInferRequest),
            response_serializer=pb.ModelStreamInferResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def create_grpc_server(
    dataplane: DataPlane,
    settings: Settings,
    *,
    port: int | None = None,
    clock: Clock = SYSTEM_CLOCK,
    reuse_port: bool = False,
) -> tuple[grpc.aio.Server, int]:
    """Build the gRPC server bound to ``settings.host`` and ``port`` (default
    ``settings.grpc_port``; 0 = any free port). Returns the server, not started, and the bound
    port. The caller starts and stops it (``await server.start()``, ``await server.stop(grace)``).
    ``reuse_port``: share the port with other processes (the workers of ``serve --workers N``);
    otherwise a port already in use is an error, as for HTTP (grpcio shares ports by default).
    """
    wanted = settings.grpc_port if port is None else port
    if not 0 <= wanted <= 65535:
        raise InvalidInputError(f"grpc_port must be in 0..65535 to serve gRPC, got {wanted}")
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", _MAX_SEND_BYTES),
            ("grpc.so_reuseport", int(reuse_port)),
        ]
    )
    server.add_generic_rpc_handlers(
        (GrpcInferenceService(dataplane, settings, clock).generic_handler(),)
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{wanted}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise UnavailableError(f"cannot bind the gRPC server to {address}: {exc}") from exc
    return server, bound
