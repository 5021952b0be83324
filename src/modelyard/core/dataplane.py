"""The dataplane: the one protocol-neutral API every frontend calls (REST, gRPC, stream, batch).

Frontends decode the wire into :class:`~modelyard.types.InferRequest` and a
:class:`~modelyard.types.RequestContext`, call these methods, encode the result, and map
:class:`~modelyard.errors.ModelYardError` codes to their status codes. Nothing else.
"""

from __future__ import annotations

from modelyard.types import (
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelMetadata,
    ModelStatistics,
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

    async def model_config(self, name: str, version: str | None = None) -> ModelConfig:
        """The configuration of the version ``name`` (and ``version``) resolves to, derived from
        its manifest. Unknown names and versions raise ModelNotFoundError, as metadata does."""
        raise NotImplementedError

    async def model_statistics(
        self, name: str | None = None, version: str | None = None
    ) -> list[ModelStatistics]:
        """Counts of this process since it started: of one version; of a model's versions (at
        least the one it would serve, zeros when unused) when ``version`` is None; of every
        model when ``name`` is None too."""
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
