"""Commands for running many models: idle models (``modelyard idle``) and a running server's
model cache (``modelyard cache``)."""

from __future__ import annotations

from typing import Any

import click
import orjson
from rich.table import Table

from modelyard.cli_common import console, load_cli_settings, open_registry, registry_option, when
from modelyard.errors import InvalidInputError, UnavailableError


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
    group.add_command(idle)
    group.add_command(cache)


@click.command(short_help="List model versions without traffic in the last N days.")
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="No request for this many days (versions never called count when older than that).",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON lines.")
@registry_option
def idle(days: float, as_json: bool, registry: str | None) -> None:
    """List model versions nobody called in the last DAYS days, from the request counts every
    server writes to the registry: candidates to retire. Aliases are shown, so a version that
    production still points at stands out."""
    from modelyard.core.usage import idle_versions

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        rows = idle_versions(reg, days=days)
    if as_json:
        for row in rows:
            click.echo(
                orjson.dumps(
                    {
                        "model": row.model,
                        "version": row.version,
                        "aliases": list(row.aliases),
                        "last_request_at": row.last_request_at,
                        "requests": row.requests,
                        "created_at": row.created_at,
                    }
                ).decode()
            )
        return
    table = Table(title=f"versions without traffic for {days:g} days")
    table.add_column("model", overflow="fold")
    table.add_column("version")
    table.add_column("aliases", overflow="fold")
    table.add_column("last request", no_wrap=True)
    table.add_column("requests", justify="right")
    table.add_column("created", no_wrap=True)
    for row in rows:
        last = "never" if row.last_request_at is None else when(row.last_request_at)
        table.add_row(
            row.model,
            str(row.version),
            ", ".join(row.aliases),
            last,
            str(row.requests),
            when(row.created_at),
        )
    console().print(table)


@click.command(short_help="Show a running server's model cache.")
@click.option(
    "--url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Base URL of the server (its HTTP port).",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the raw JSON.")
def cache(url: str, as_json: bool) -> None:
    """Show what a running server holds in RAM: loaded versions with their size, cold-start
    timings (fetch, load, warm-up, first request), the hit ratio, and the local disk tier.
    With --workers N each worker has a cache of its own: this shows the one worker (named by
    its pid) that took the connection; /metrics sums them all."""
    doc = fetch_cache_doc(url)
    if as_json:
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    print_cache_doc(doc)


def fetch_cache_doc(url: str) -> dict[str, Any]:
    import httpx

    from modelyard.core.fleet_wiring import CACHE_PATH

    if not url.startswith(("http://", "https://")):
        raise InvalidInputError(f"--url must start with http:// or https://, got {url!r}")
    try:
        response = httpx.get(url.rstrip("/") + CACHE_PATH, timeout=10.0)
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot reach the server at {url}: {exc}") from exc
    if response.status_code != 200:
        raise UnavailableError(f"{url}{CACHE_PATH} answered {response.status_code}")
    doc = response.json()
    if not isinstance(doc, dict):
        raise UnavailableError(f"{url}{CACHE_PATH} did not answer a JSON object")
    return doc


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _secs(value: Any) -> str:
    return "-" if value is None else f"{value * 1e3:.1f}"


def print_cache_doc(doc: dict[str, Any]) -> None:
    """Render a ``GET /v2/fleet/cache`` document as a summary line and a table."""
    stats = doc.get("stats", {})
    ratio = stats.get("hit_ratio")
    disk = doc.get("disk", {})
    out = console()
    pid = doc.get("pid")
    out.print(
        f"model cache{'' if pid is None else f' of pid {pid}'}: "
        f"{_mib(doc.get('bytes_in_use'))} of {_mib(doc.get('budget_bytes'))} MiB, "
        f"RSS {_mib(doc.get('rss_bytes'))} MiB, hit ratio "
        f"{'-' if ratio is None else f'{ratio:.3f}'}, loads {stats.get('loads', 0)}, "
        f"evictions {stats.get('evictions', 0)}, idle unloads {stats.get('idle_unloads', 0)}"
    )
    out.print(
        f"local disk: {_mib(disk.get('bytes'))} of {_mib(disk.get('budget_bytes'))} MiB in "
        f"{disk.get('entries', 0)} versions ({disk.get('root', '?')})"
    )
    table = Table(title="loaded versions (times in ms)")
    for column in ("model", "version", "state", "MiB", "in flight", "pinned"):
        table.add_column(column, overflow="fold")
    for column in ("fetch", "load", "warm-up", "first request", "idle s"):
        table.add_column(column, justify="right")
    for row in doc.get("entries", []):
        table.add_row(
            str(row.get("model")),
            str(row.get("version")),
            str(row.get("state")),
            _mib(row.get("bytes")),
            str(row.get("in_flight")),
            "yes" if row.get("pinned") else "",
            _secs(row.get("fetch_s")),
            _secs(row.get("load_s")),
            _secs(row.get("warmup_s")),
            _secs(row.get("first_request_s")),
            f"{row.get('idle_s', 0):.1f}",
        )
    out.print(table)
