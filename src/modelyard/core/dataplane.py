"""The dataplane: the one protocol-neutral API every frontend calls (REST, gRPC, stream, batch).

Frontends decode the wire into :class:`~modelyard.types.InferRequest` and a
:class:`~modelyard.types.RequestContext`, call these methods, encode the result, and map
:class:`~modelyard.errors.ModelYardError` codes to their status codes. Nothing else.
"""

from __future__ import annotations

from modelyard.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    RepositoryEntry,
    RequestContext,
    ServerMetadata,
)


class DataPlane:
    def live(self) -> bool:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def server_metadata(self) -> ServerMetadata:
        raise NotImplementedError

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        raise NotImplementedError

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        raise NotImplementedError

    async def infer(
        self, name: str, version: str | None, request: InferRequest, ctx: RequestContext
    ) -> InferResponse:
        """Validate ``request`` against the version's signature, run it, return the outputs
        (only those in ``request.outputs`` when given). Raises ModelYardError subclasses."""
        raise NotImplementedError

    async def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        raise NotImplementedError

    async def load_model(self, name: str) -> None:
        raise NotImplementedError

    async def unload_model(self, name: str) -> None:
        raise NotImplementedError
