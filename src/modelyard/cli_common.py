"""Helpers shared by every ``modelyard`` command module (flags, settings, registry, output)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError
from rich.console import Console

from modelyard.errors import InvalidInputError, PickleRefusedError, RegistryNotFoundError
from modelyard.registry.packaging import PICKLE_SUFFIXES
from modelyard.registry.records import ModelVersion
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


CREATE_HINT = "create one with `modelyard push` or `modelyard serve --demo`"


@contextmanager
def open_registry(settings: Settings, *, create: bool = False) -> Iterator[Registry]:
    """The registry of ``settings``. Only commands that add to it pass ``create=True``: the
    others refuse a registry that does not exist (a mistyped --registry), with a hint."""
    try:
        registry = Registry.from_settings(settings, create=create)
    except RegistryNotFoundError as exc:
        raise RegistryNotFoundError(f"{exc.message} ({CREATE_HINT})") from exc
    try:
        yield registry
    finally:
        registry.close()


@contextmanager
def pickle_flag_hint() -> Iterator[None]:
    """A pickle refused at push names the CLI's opt-in (--allow-pickle), not the Python one."""
    try:
        yield
    except PickleRefusedError as exc:
        raise PickleRefusedError(
            f"push: {exc.file} is a pickle/joblib file, and loading it runs arbitrary code; "
            f"pass --allow-pickle (or set {ENV_PREFIX}ALLOW_PICKLE=true) only for models you trust",
            file=exc.file,
        ) from exc


def warn_if_pickled(version: ModelVersion, settings: Settings) -> None:
    """One line on stderr when ``version`` holds pickle/joblib files that servers refuse to load
    without the allow_pickle setting (the push-time --allow-pickle does not carry over)."""
    if settings.allow_pickle:
        return
    if any(PurePosixPath(f.path).suffix.lower() in PICKLE_SUFFIXES for f in version.manifest.files):
        click.echo(
            f"warning: {version.ref} holds a pickle/joblib file: servers refuse to load it unless "
            f"{ENV_PREFIX}ALLOW_PICKLE=true is set where they run",
            err=True,
        )


def require_registry(settings: Settings) -> None:
    """Refuse, as :func:`open_registry` does, when the registry does not exist (for commands
    whose jobs open it themselves)."""
    with open_registry(settings):
        pass


#: The width of output written to a pipe or a file: wide enough that no table row wraps, so that
#: programs reading it see one line per row (a table takes only the width it needs).
PIPE_WIDTH = 1000


def console() -> Console:
    """The console every command prints tables on. Rich takes COLUMNS, when set, as the width;
    otherwise it falls back to 80 columns when not writing to a terminal, which wraps tables
    into more lines than rows: those get PIPE_WIDTH instead."""
    out = Console(highlight=False)
    if not out.is_terminal and out._width is None:  # None: no width given, no COLUMNS set
        out.width = PIPE_WIDTH
    return out


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
