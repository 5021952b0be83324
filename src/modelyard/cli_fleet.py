"""Commands for running many models: usage, idle models, cache state (the scale issue)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
