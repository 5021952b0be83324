"""Commands for traffic management: endpoints, rollouts, shadows."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click
import yaml
from rich.table import Table

from modelyard.cli_common import console, load_cli_settings, open_registry, registry_option, when
from modelyard.errors import InvalidInputError
from modelyard.registry.store import redact


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
    group.add_command(endpoint_group)
    # rollout / shadow commands live in their own module (another owner, same feature).
    from modelyard import cli_rollout

    cli_rollout.register(group)


# ---- endpoints ------------------------------------------------------------------------------
@click.group("endpoint", short_help="Create, list, show and delete endpoints.")
def endpoint_group() -> None:
    """Endpoints: public names with a traffic policy (weighted routes, sticky keys, fallbacks,
    hedging, response cache, cascade, rollouts), stored in the registry. Servers pick changes
    up within watch_interval_s."""


@endpoint_group.command("apply", short_help="Create or replace an endpoint from a spec file.")
@click.option(
    "-f",
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    required=True,
    help="YAML or JSON endpoint spec ('-' reads stdin).",
)
@registry_option
def apply_cmd(path: Path, registry: str | None) -> None:
    """Validate the spec in FILE (its rules, and every model it names against the registry)
    and store it: a new endpoint, or the next revision of an existing one. Nothing is stored
    when anything is wrong; every problem is listed."""
    from modelyard.registry.endpoints import EndpointStore

    doc = _read_spec(path)
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        record = EndpointStore(reg).apply(doc)
    verb = "created" if record.revision == 1 else "updated"
    click.echo(f"endpoint {record.name} {verb} (revision {record.revision})")


@endpoint_group.command("list", short_help="List the endpoints.")
@registry_option
def list_cmd(registry: str | None) -> None:
    """List the endpoints: name, revision, routes with weights, policies, last change."""
    from modelyard.registry.endpoints import EndpointStore

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        records = EndpointStore(reg).list()
    table = Table(title=f"endpoints in {redact(settings.registry)}")
    table.add_column("name", overflow="fold")
    table.add_column("revision", justify="right")
    table.add_column("routes", overflow="fold")
    table.add_column("policies", overflow="fold")
    table.add_column("updated", no_wrap=True)
    for record in records:
        spec = record.spec
        routes = ", ".join(f"{r.name}={r.label()} {r.weight:g}%" for r in spec.routes)
        policies = [
            name
            for name, on in (
                (f"sticky:{spec.sticky_key}", spec.sticky_key),
                (f"timeout:{spec.timeout_ms:g}ms" if spec.timeout_ms else "", spec.timeout_ms),
                ("fallback", spec.fallback),
                ("hedging", spec.hedging),
                ("cache", spec.cache),
                ("cascade", spec.cascade),
                (f"shadows:{len(spec.shadows)}", spec.shadows),
                ("rollout", spec.rollout),
            )
            if on
        ]
        table.add_row(
            record.name,
            str(record.revision),
            routes,
            ", ".join(policies) or "-",
            when(record.updated_at),
        )
    console().print(table)


@endpoint_group.command("show", short_help="Print an endpoint's spec.")
@click.argument("name")
@registry_option
def show_cmd(name: str, registry: str | None) -> None:
    """Print endpoint NAME's spec as YAML (ready for `endpoint apply -f`), after a comment line
    with its revision and last change."""
    from modelyard.registry.endpoints import EndpointStore, spec_doc

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        record = EndpointStore(reg).get(name)
    click.echo(f"# endpoint {record.name}, revision {record.revision}, {when(record.updated_at)}")
    click.echo(yaml.safe_dump(spec_doc(record.spec), sort_keys=False).rstrip())


@endpoint_group.command("delete", short_help="Delete an endpoint.")
@click.argument("name")
@registry_option
def delete_cmd(name: str, registry: str | None) -> None:
    """Delete endpoint NAME. Its name then reaches the model of that name, if there is one."""
    from modelyard.registry.endpoints import EndpointStore

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        EndpointStore(reg).delete(name)
    click.echo(f"endpoint {name} deleted")


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``on``/``off``/``yes``/``no`` as booleans, which would turn the fallback
    key ``on:`` into ``True``; here only true/false are booleans (as in YAML 1.2)."""


_BOOL = "tag:yaml.org,2002:bool"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_spec(path: Path) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise InvalidInputError(f"--file {path}: {exc.strerror or exc}") from exc
    try:
        doc = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"--file {path}: not valid YAML or JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidInputError(f"--file {path}: the spec must be a mapping (name, routes, ...)")
    return doc
