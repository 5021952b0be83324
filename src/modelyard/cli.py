"""The ``modelyard`` command line: a thin shell over the registry, the runtimes and the server.

Every command builds :class:`~modelyard.settings.Settings` from its flags (flags given win over
``MODELYARD_*`` env vars and the config file), does one thing, and prints the result. A
:class:`~modelyard.errors.ModelYardError` becomes one red line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelyard import __version__
from modelyard.cli_common import (
    console,
    help_for,
    load_cli_settings,
    open_registry,
    pickle_flag_hint,
    registry_option,
    warn_if_pickled,
    when,
)
from modelyard.errors import FailedPreconditionError, InvalidInputError, ModelYardError
from modelyard.registry.endpoints import inputs_text
from modelyard.registry.store import redact
from modelyard.settings import ENV_PREFIX, Settings, use_config_file

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns the errors ModelYard raises on purpose into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelYardError as exc:
            err = Console(stderr=True, highlight=False, soft_wrap=True)
            message = " ".join(exc.message.splitlines())
            err.print(Text(f"error: {message}", style="bold red"))
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """ModelYard: serve many ML models from one registry and manage traffic between versions.

    Every command reads the registry named by --registry, else $MODELYARD_REGISTRY, else
    ./.modelyard. Only commands that add to it (push, serve, mlflow import/sync/follow)
    create a registry that does not exist yet; the others refuse it.
    """


# ---- serve ------------------------------------------------------------------------------------
@main.command(short_help="Serve the models over HTTP and gRPC.")
@registry_option
@click.option("--host", default=None, help=help_for("host"))
@click.option("--http-port", type=int, default=None, help=help_for("http_port"))
@click.option("--grpc-port", type=int, default=None, help=help_for("grpc_port"))
@click.option("--workers", type=int, default=None, help=help_for("workers"))
@click.option(
    "--http-server",
    type=click.Choice(get_args(Settings.model_fields["http_server"].annotation)),
    default=None,
    help=help_for("http_server"),
)
@click.option(
    "--preload", metavar="A,B", default=None, help=help_for("preload", "Comma-separated. ")
)
@click.option("--demo", is_flag=True, default=None, help=help_for("demo"))
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"YAML settings file (keys are setting names). [env: ${ENV_PREFIX}CONFIG]",
)
def serve(
    registry: str | None,
    host: str | None,
    http_port: int | None,
    grpc_port: int | None,
    workers: int | None,
    http_server: str | None,
    preload: str | None,
    demo: bool | None,
    config: Path | None,
) -> None:
    """Serve the registry's models over HTTP (OIP V2 + V1) and gRPC until SIGTERM/SIGINT."""
    if config is not None:
        use_config_file(config)
    settings = load_cli_settings(
        registry=registry,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        workers=workers,
        http_server=http_server,
        preload=None if preload is None else tuple(p for p in preload.split(",") if p.strip()),
        demo=demo,
    )
    from modelyard.app import serve as run_server

    raise SystemExit(run_server(settings))


# ---- registry commands ------------------------------------------------------------------------
def _parse_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"--metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("--metadata must be a JSON object")
    return value


@main.command(short_help="Push a model file as a new version.")
@click.argument("path", metavar="PATH_OR_FILE", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Model name, e.g. fraud.")
@click.option("--alias", default=None, help="Point this alias (e.g. production) at the version.")
@click.option("--metadata", metavar="JSON", default=None, help="JSON object stored with it.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    default=False,
    help="Accept .pkl/.pickle/.joblib files. They run code when loaded: trusted files only.",
)
@registry_option
def push(
    path: Path,
    name: str,
    alias: str | None,
    metadata: str | None,
    allow_pickle: bool,
    registry: str | None,
) -> None:
    """Push a model file (.onnx, .skops, ...) or a directory with a modelyard.json as a new
    version of NAME; prints the new version, e.g. fraud:3."""
    meta = _parse_metadata(metadata)
    settings = load_cli_settings(registry=registry)
    with open_registry(settings, create=True) as reg, pickle_flag_hint():
        version = reg.push(
            path,
            name=name,
            alias=alias,
            metadata=meta,
            allow_pickle=True if allow_pickle else None,
        )
    click.echo(version.ref)
    warn_if_pickled(version, settings)


@main.command(short_help="List the models.")
@registry_option
def models(registry: str | None) -> None:
    """List the models: name, latest version, aliases, created."""
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        infos = reg.list_models()
    table = Table(title=f"models in {redact(settings.registry)}")
    table.add_column("name", overflow="fold")
    table.add_column("latest version")
    table.add_column("aliases", overflow="fold")
    table.add_column("created", no_wrap=True)
    for info in infos:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(info.aliases.items()))
        latest = "-" if info.latest_version is None else str(info.latest_version)
        table.add_row(info.name, latest, aliases, when(info.created_at))
    console().print(table)


@main.command(short_help="List the versions of a model.")
@click.argument("name")
@registry_option
def versions(name: str, registry: str | None) -> None:
    """List the versions of model NAME: version, aliases, runtime, size, created, metadata."""
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        rows = reg.list_versions(name)
    table = Table("version", "aliases", "runtime", "bytes", title=name)
    table.add_column("created", no_wrap=True)
    table.add_column("metadata", overflow="fold")
    for mv in rows:
        meta = orjson.dumps(dict(mv.metadata), default=str).decode()
        table.add_row(
            str(mv.version),
            ", ".join(mv.aliases),
            mv.manifest.runtime,
            str(mv.manifest.total_bytes()),
            when(mv.created_at),
            meta if len(meta) <= 200 else meta[:197] + "...",
        )
    console().print(table)


@main.command(short_help="Create or move an alias.")
@click.argument("name")
@click.argument("version", type=int)
@click.argument("alias")
@click.option(
    "--force",
    is_flag=True,
    help="Move the alias even to a version whose inputs differ from the current target's.",
)
@registry_option
def alias(name: str, version: int, alias: str, force: bool, registry: str | None) -> None:
    """Point ALIAS of model NAME at VERSION (one atomic write; creates or moves the alias).

    Moving an alias to a version with other inputs (names, datatypes or shapes) would break
    the clients that call NAME@ALIAS: it is refused unless --force."""
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        target = reg.resolve(name, version)
        current = reg.aliases(name).get(alias)
        if current is not None and current != version and not force:
            before = reg.resolve(name, current).manifest.signature.inputs
            if before != target.manifest.signature.inputs:
                raise FailedPreconditionError(
                    f"{name}:{version}'s inputs ({inputs_text(target.manifest.signature.inputs)}) "
                    f"differ from those of {name}:{current}, which {name}@{alias} serves now "
                    f"({inputs_text(before)}): its clients would get errors; pass --force to move "
                    "it anyway"
                )
        reg.set_alias(name, alias, version)
    click.echo(f"{name}@{alias} -> {name}:{version}")


@main.command(short_help="Remove an alias.")
@click.argument("name")
@click.argument("alias")
@click.option(
    "--force", is_flag=True, help="Remove the alias even when endpoints name it (they break)."
)
@registry_option
def unalias(name: str, alias: str, force: bool, registry: str | None) -> None:
    """Remove ALIAS of model NAME (its version stays). Requests for NAME@ALIAS then fail with
    404; without a production alias, NAME alone serves its newest version.

    An alias that endpoints name (routes, shadows, fallback, cascade, rollout candidate) is
    kept unless --force: those endpoints would fail."""
    from modelyard.registry.endpoints import EndpointStore

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        users = {} if force else EndpointStore(reg).alias_users(name, alias)
        if users:
            used = ", ".join(f"endpoint {ep} ({', '.join(where)})" for ep, where in users.items())
            raise FailedPreconditionError(
                f"{name}@{alias} is used by {used}; pass --force to remove it anyway"
            )
        reg.delete_alias(name, alias)
    click.echo(f"{name}@{alias} removed")


# ---- predict ----------------------------------------------------------------------------------
def _input_text(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text()
        except OSError as exc:
            raise InvalidInputError(f"--input {value}: {exc.strerror or exc}") from exc
    return value


@main.command(short_help="Predict in-process, without a server.")
@click.argument("model", metavar="NAME[@ALIAS|:VERSION]")
@click.option(
    "--input",
    "input_",
    metavar="JSON",
    required=True,
    help='Inputs as JSON: {"input name": nested list, ...} or a V2 request body '
    '{"inputs": [{"name", "shape", "datatype", "data"}]}; @FILE reads a file, - reads stdin.',
)
@registry_option
def predict(model: str, input_: str, registry: str | None) -> None:
    """Predict in this process (no server): load the version from the registry, run it on
    --input, print the outputs as one JSON object (output name -> nested list).

    NAME alone serves alias production if set, else the newest version.
    """
    from modelyard import cli_predict

    name, ref = cli_predict.parse_model_ref(model)
    payload = cli_predict.read_payload(_input_text(input_))
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        version = reg.resolve(name, ref)
        runtime = cli_predict.load_runtime(reg, version, settings)
        try:
            outputs = cli_predict.predict(runtime, payload, ref=version.ref)
        finally:
            runtime.unload()
    click.echo(cli_predict.outputs_to_json(outputs))


# ---- feature command modules ------------------------------------------------------------------
# Each module adds its commands to the group; keep this the only list.
def _register_features() -> None:
    from modelyard import cli_fleet, cli_jobs, cli_mlflow, cli_monitoring, cli_optimize, cli_traffic

    for module in (cli_fleet, cli_jobs, cli_mlflow, cli_monitoring, cli_optimize, cli_traffic):
        module.register(main)
    from modelyard.bench.cli import bench_command

    main.add_command(bench_command)


_register_features()
