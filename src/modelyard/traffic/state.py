"""What the traffic layer reads of rollout state: the hook the controller side fills in."""

from __future__ import annotations

from typing import Protocol


class RolloutView(Protocol):
    """Current effective route weights of endpoints with an active rollout."""

    def weights(self, endpoint: str) -> dict[str, float] | None:
        """Weights (percent, summing to 100) by route name, including the synthetic route
        ``"candidate"`` (= ``spec.rollout.candidate``) while a rollout is active; None = use the
        spec's weights. Called on the hot path: must be a cheap in-memory lookup."""
        ...
