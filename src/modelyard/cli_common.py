"""Helpers shared by every ``modelyard`` command module (flags, settings, registry, output)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError
from rich.console import Console

from modelyard.errors import InvalidInputError
from modelyard.registry.registry import Registry
from modelyard.settings import ENV_PREFIX, Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def help_for(field: str, extra: str = "") -> str:
    """Help text of a flag = the settings field's description (one source of truth)."""
    info = Settings.model_fields[field]
    env = f"${ENV_PREFIX}{field.upper()}"
    return f"{info.description} {extra}[env: {env}; default: {info.default!r}]"


def registry_option(func: F) -> F:
    return click.option("--registry", metavar="URL", default=None, help=help_for("registry"))(func)


def load_cli_settings(**flags: Any) -> Settings:
    try:
        return load_settings(**flags)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise InvalidInputError(f"setting '{field}': {first['msg']}") from exc
    except (ValueError, OSError, yaml.YAMLError) as exc:
        raise InvalidInputError(f"settings: {exc}") from exc


@contextmanager
def open_registry(settings: Settings) -> Iterator[Registry]:
    registry = Registry.from_settings(settings)
    try:
        yield registry
    finally:
        registry.close()


def console() -> Console:
    return Console(highlight=False)


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
