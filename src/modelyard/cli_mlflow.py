"""``modelyard mlflow``: MLflow's model registry as a source (import a version, sync an alias)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli_common import (
    help_for,
    load_cli_settings,
    open_registry,
    pickle_flag_hint,
    registry_option,
)
from modelyard.errors import InvalidInputError, ModelYardError
from modelyard.registry.names import PRODUCTION
from modelyard.registry.registry import Registry

if TYPE_CHECKING:
    from modelyard.registry.mlflow_source import MlflowRegistry, MlflowSource
    from modelyard.settings import Settings

F = Callable[..., Any]


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
    group.add_command(mlflow_group)


def mlflow_source(settings: Settings) -> MlflowSource:
    """The MLflow client of ``settings``: its tracking URI and request limits; MLflow's
    download progress bar only when stderr is a terminal."""
    from modelyard.registry.mlflow_source import MlflowSource

    return MlflowSource(
        settings.mlflow_tracking_uri,
        timeout_s=settings.mlflow_timeout_s,
        max_retries=settings.mlflow_max_retries,
        progress=sys.stderr.isatty(),
    )


def _tracking_option(func: F) -> F:
    return click.option(
        "--tracking-uri", metavar="URL", default=None, help=help_for("mlflow_tracking_uri")
    )(func)


@click.group("mlflow", short_help="Import models from MLflow's registry; follow its aliases.")
def mlflow_group() -> None:
    """MLflow's model registry as a source. Versions are copied into the ModelYard registry
    (checksummed, with their MLflow coordinates in the version metadata) from the flavors
    ModelYard serves: onnx, sklearn (skops; pickle only with --allow-pickle), xgboost,
    lightgbm. Needs the extra modelyard[mlflow] (mlflow-skinny)."""


@mlflow_group.command("import", short_help="Copy an MLflow model version into the registry.")
@click.argument("uri")
@click.option("--name", default=None, help="ModelYard model name (default: the MLflow name).")
@click.option("--alias", default=None, help="Point this ModelYard alias at the version.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    default=False,
    help="Accept pickled scikit-learn/LightGBM models (they run code when loaded).",
)
@_tracking_option
@registry_option
def import_cmd(
    uri: str,
    name: str | None,
    alias: str | None,
    allow_pickle: bool,
    tracking_uri: str | None,
    registry: str | None,
) -> None:
    """Copy the MLflow model version URI (models:/NAME/VERSION or models:/NAME@ALIAS) into a
    new ModelYard version. Importing the same MLflow version again reuses the first copy."""
    from modelyard.registry.mlflow_source import import_version

    settings = load_cli_settings(registry=registry, mlflow_tracking_uri=tracking_uri)
    source = mlflow_source(settings)
    with open_registry(settings, create=True) as reg, pickle_flag_hint():
        result = import_version(reg, source, uri, name=name, alias=alias, allow_pickle=allow_pickle)
    verb = "imported" if result.imported else "already imported"
    aliases = f" (aliases: {', '.join(result.version.aliases)})" if result.version.aliases else ""
    click.echo(f"{verb} {result.mlflow.uri} as {result.version.ref}{aliases}")


@mlflow_group.command("sync", short_help="Point a ModelYard alias where an MLflow alias points.")
@click.argument("uri")
@click.option("--name", default=None, help="ModelYard model name (default: the MLflow name).")
@click.option("--alias", default=PRODUCTION, show_default=True, help="The ModelYard alias to move.")
@click.option("--allow-pickle", is_flag=True, default=False, help="As for import.")
@click.option(
    "--watch",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Keep following: check again every SECONDS until interrupted (errors are reported "
    "and retried at the next check).",
)
@_tracking_option
@registry_option
def sync_cmd(
    uri: str,
    name: str | None,
    alias: str,
    allow_pickle: bool,
    watch: float | None,
    tracking_uri: str | None,
    registry: str | None,
) -> None:
    """Look up the version the MLflow alias URI (models:/NAME@ALIAS) names now, import it if
    needed, and move ALIAS of the ModelYard model to it; servers hot-swap to it. With --watch,
    keep doing so: promotions in MLflow then reach every server within SECONDS."""
    from modelyard.registry.mlflow_source import parse_ref

    ref = parse_ref(uri)
    settings = load_cli_settings(registry=registry, mlflow_tracking_uri=tracking_uri)
    source = mlflow_source(settings)
    with open_registry(settings, create=True) as reg:
        if watch is None:
            with pickle_flag_hint():
                _sync_once(reg, source, uri, name, alias, allow_pickle, quiet=False)
            return
        click.echo(f"following {ref} -> {name or ref.name}@{alias} every {watch:g} s")
        follow(reg, source, uri, name, alias, allow_pickle, every_s=watch)


def follow(
    reg: Registry,
    source: MlflowRegistry,
    uri: str,
    name: str | None,
    alias: str,
    allow_pickle: bool,
    *,
    every_s: float,
    sleep: Callable[[float], None] = time.sleep,
    rounds: int | None = None,
) -> None:
    """Sync every ``every_s`` seconds (``rounds`` times, or until interrupted); a failed round
    is reported and retried at the next one."""
    done = 0
    while rounds is None or done < rounds:
        try:
            _sync_once(reg, source, uri, name, alias, allow_pickle, quiet=True)
        except ModelYardError as exc:
            click.echo(f"sync failed, retrying in {every_s:g} s: {exc.message}", err=True)
        done += 1
        if rounds is None or done < rounds:
            sleep(every_s)


def _sync_once(
    reg: Registry,
    source: MlflowRegistry,
    uri: str,
    name: str | None,
    alias: str,
    allow_pickle: bool,
    *,
    quiet: bool,
) -> None:
    from modelyard.registry.mlflow_source import sync_alias

    result = sync_alias(reg, source, uri, name=name, alias=alias, allow_pickle=allow_pickle)
    if result.action == "unchanged":
        if not quiet:
            click.echo(f"{result.version.model}@{alias} already serves {result.mlflow.uri}")
        return
    was = "" if result.previous is None else f" (was version {result.previous})"
    click.echo(
        f"{result.version.model}@{alias} -> version {result.version.version}{was}: "
        f"{result.mlflow.uri}, {result.action}"
    )


@mlflow_group.command("follow", short_help="Have the controller keep an alias on MLflow's.")
@click.argument("uri")
@click.option("--name", default=None, help="ModelYard model name (default: the MLflow name).")
@click.option("--alias", default=PRODUCTION, show_default=True, help="The ModelYard alias to move.")
@_tracking_option
@registry_option
def follow_cmd(
    uri: str, name: str | None, alias: str, tracking_uri: str | None, registry: str | None
) -> None:
    """Record in the registry that ALIAS of the model follows the MLflow alias URI
    (models:/NAME@ALIAS) of the tracking server in effect now (--tracking-uri, else
    MODELYARD_MLFLOW_TRACKING_URI, else MLflow's default), after checking that the alias exists
    there. The controller (elected among the `modelyard serve` processes whose
    MODELYARD_CONTROLLER setting is true, the default) syncs it every mlflow_sync_interval_s, so a
    promotion in MLflow reaches every server by itself. Run `modelyard mlflow sync` once to
    import the current version right away."""
    from modelyard.control.mlflow_follow import Follow, set_follow
    from modelyard.registry.mlflow_source import parse_ref

    ref = parse_ref(uri)
    if ref.alias is None:
        raise InvalidInputError(f"follow needs an MLflow alias (models:/NAME@ALIAS), not {ref}")
    settings = load_cli_settings(registry=registry, mlflow_tracking_uri=tracking_uri)
    source = mlflow_source(settings)
    source.resolve(ref)  # the alias exists there (not found / unavailable otherwise)
    with open_registry(settings, create=True) as reg:
        stored = set_follow(reg, Follow(name or ref.name, uri, alias, source.tracking_uri))
    click.echo(f"{stored.model}@{stored.alias} follows {stored.uri} ({stored.tracking_uri})")


@mlflow_group.command("unfollow", short_help="Stop following an MLflow alias.")
@click.argument("name")
@registry_option
def unfollow_cmd(name: str, registry: str | None) -> None:
    """Stop the controller from moving NAME's alias after MLflow (the alias stays where it is)."""
    from modelyard.control.mlflow_follow import remove_follow

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        removed = remove_follow(reg, name)
    click.echo(f"{name} {'no longer follows MLflow' if removed else 'followed nothing'}")


@mlflow_group.command("follows", short_help="List the models that follow an MLflow alias.")
@registry_option
def follows_cmd(registry: str | None) -> None:
    """One line per follow: model@alias <- MLflow URI (tracking server)."""
    from modelyard.control.mlflow_follow import follows

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        found = follows(reg)
    for f in found:
        where = f" ({f.tracking_uri})" if f.tracking_uri else ""
        click.echo(f"{f.model}@{f.alias} <- {f.uri}{where}")
    if not found:
        click.echo("no model follows an MLflow alias")
