"""Naming rules for models and aliases.

Names end up in URLs, SQL rows and artifact keys (``<model>/<uuid>/``), so they are restricted to a
small safe alphabet: no separators, no ``..``, nothing that could escape a directory.
"""

from __future__ import annotations

import re

from modelyard.errors import InvalidNameError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_NAME_RE = re.compile(NAME_PATTERN)

PRODUCTION = "production"
"""The alias a bare model name resolves to when it is set."""


def validate_name(name: object, *, what: str = "model name") -> str:
    """Return ``name`` when it is a valid model (or endpoint) name; raise InvalidNameError."""
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if ".." in name:
        raise InvalidNameError(f"invalid {what} {name!r}: '..' is not allowed")
    return name


def validate_alias(alias: object) -> str:
    """Return ``alias`` when it is a valid alias; all-digit aliases would read as versions."""
    name = validate_name(alias, what="alias")
    if name.isdigit():
        raise InvalidNameError(
            f"invalid alias {name!r}: an alias cannot be all digits (it would read as a version)"
        )
    return name
