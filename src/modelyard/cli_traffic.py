"""Commands for traffic management: endpoints, rollouts, shadows."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
