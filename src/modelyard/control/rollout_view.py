"""The rollout state as the traffic layer sees it: route weights, refreshed from the registry.

:class:`RegistryRolloutView` implements :class:`~modelyard.traffic.state.RolloutView`.
``weights`` is a dict lookup (it runs for every request); a background task re-reads table
``rollouts`` every ``watch_interval_s``, and the controller of this process refreshes it at once
after a decision, so a rollback takes effect here immediately and on other replicas within one
watch interval.
"""

from __future__ import annotations

import asyncio
import logging

from modelyard.control.store import load_endpoint, load_rollouts
from modelyard.errors import NotFoundError
from modelyard.registry.registry import Registry
from modelyard.traffic.rollout import RolloutState, effective_weights

log = logging.getLogger("modelyard.controller")


class RegistryRolloutView:
    """Effective weights of endpoints whose rollout is running or paused."""

    def __init__(self, registry: Registry, *, refresh_s: float) -> None:
        self.registry = registry
        self.refresh_s = refresh_s
        self._weights: dict[str, dict[str, float]] = {}
        self._states: dict[str, RolloutState] = {}

    def weights(self, endpoint: str) -> dict[str, float] | None:
        return self._weights.get(endpoint)

    def state(self, endpoint: str) -> RolloutState | None:
        """The last rollout state read for ``endpoint`` (any status)."""
        return self._states.get(endpoint)

    def refresh(self) -> None:
        """Re-read the rollout states (and the specs of endpoints with an active one)."""
        stored = load_rollouts(self.registry)
        weights: dict[str, dict[str, float]] = {}
        for name, item in stored.items():
            if not item.state.status.active:
                continue
            try:
                spec = load_endpoint(self.registry, name)
            except NotFoundError:
                continue
            found = effective_weights(spec, item.state)
            if found is not None:
                weights[name] = found
        self._states = {name: item.state for name, item in stored.items()}
        self._weights = weights

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:
                log.warning("reading rollout states failed: %s", exc)
            await asyncio.sleep(self.refresh_s)
