"""Commands for observability: drift reports and friends."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
