"""Commands for offline use: batch scoring, stream scoring, materialised predictions."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
