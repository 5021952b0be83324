"""The hook through which the traffic layer hands requests to shadows."""

from __future__ import annotations

import asyncio
from typing import Protocol

from modelyard.traffic.spec import EndpointSpec
from modelyard.types import InferRequest, InferResponse, RequestContext


class ShadowDispatcher(Protocol):
    """Copies requests to an endpoint's shadows and compares their outputs with the primary's."""

    def dispatch(
        self,
        endpoint: EndpointSpec,
        request: InferRequest,
        primary: asyncio.Future[InferResponse],
        ctx: RequestContext,
    ) -> None:
        """Called right after the primary is dispatched. Must return at once: the client never
        waits for a shadow."""
        ...
