"""Plugs endpoints and their traffic policies
into a server :class:`~modelyard.app.App` (listed in ``app._features``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.app import App


def install(app: App) -> None:
    """Add routes, observers, background tasks or a dataplane wrapper to ``app``."""
