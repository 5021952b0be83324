"""``modelyard bench URL --model M``: load-test a model on any Open Inference Protocol V2 server.

Registered on the main CLI group by :mod:`modelyard.cli` (``main.add_command(bench_command)``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from modelyard.bench import loadtest
from modelyard.bench.httpclient import encode_payload, parse_target
from modelyard.bench.loadtest import LoadTestResult, run_load_test
from modelyard.bench.payload import fetch_metadata, payload_from_metadata
from modelyard.bench.report import fmt_ms, fmt_rps
from modelyard.errors import InvalidInputError


def read_input(value: str) -> bytes:
    """``--input``: JSON text, ``@FILE`` or ``-`` (stdin), as a checked V2 request body."""
    if value == "-":
        text = sys.stdin.read()
    elif value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise InvalidInputError(f"--input {value}: {exc.strerror or exc}") from exc
    else:
        text = value
    try:
        return encode_payload(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"--input: {exc.message}") from exc


def summary_table(result: LoadTestResult) -> Table:
    """The human summary of one load test."""
    stats = result.stats
    table = Table(
        title=f"{result.model} @ {result.url}",
        caption=f"{result.concurrency} connections, {stats.duration_s:.1f} s",
        show_header=False,
    )
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(result.status_counts.items()))
    table.add_row("requests", f"{stats.requests:,}")
    table.add_row("throughput (req/s)", fmt_rps(stats.rps))
    table.add_row("responses by status", statuses or "-")
    table.add_row("errors", f"{stats.errors:,} ({result.transport_errors:,} transport)")
    for label, value in (
        ("latency mean (ms)", stats.mean_s),
        ("latency p50 (ms)", stats.p50_s),
        ("latency p90 (ms)", stats.p90_s),
        ("latency p99 (ms)", stats.p99_s),
        ("latency max (ms)", stats.max_s),
    ):
        table.add_row(label, fmt_ms(value * 1e3))
    if result.first_error:
        table.add_row("first error", result.first_error[:200], style="red")
    return table


def _run_with_progress(url: str, model: str, body: bytes, **kwargs: Any) -> LoadTestResult:
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("/"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[requests]:>9,} req  {task.fields[rps]:>8,.0f} req/s"),
        TextColumn("[red]{task.fields[errors]:,} errors"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{model}", total=kwargs["duration_s"], requests=0, rps=0.0, errors=0)

        def on_progress(p: loadtest.Progress) -> None:
            rps = p.requests / p.elapsed_s if p.elapsed_s > 0 else 0.0
            bar.update(task, completed=p.elapsed_s, requests=p.requests, rps=rps, errors=p.errors)

        return run_load_test(url, model, payload=body, on_progress=on_progress, **kwargs)


@click.command("bench", short_help="Load-test a model on any V2 server.")
@click.argument("url")
@click.option("--model", "-m", required=True, help="Model name on that server.")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 10_000),
    default=16,
    show_default=True,
    help="Connections, each with one request in flight.",
)
@click.option(
    "--duration",
    "-d",
    type=click.FloatRange(0.1, 86_400),
    default=10.0,
    show_default=True,
    help="Seconds of load.",
)
@click.option(
    "--input",
    "input_",
    metavar="JSON",
    default=None,
    help="The V2 request body; @FILE reads a file, - reads stdin. "
    "Default: one made from the model's metadata.",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 4096),
    default=1,
    show_default=True,
    help="Rows per request in the generated body (ignored with --input).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.001, 3600),
    default=30.0,
    show_default=True,
    help="Seconds before one request counts as an error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def bench_command(
    url: str,
    model: str,
    concurrency: int,
    duration: float,
    input_: str | None,
    batch: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Load-test MODEL on the V2 server at URL (e.g. http://127.0.0.1:8080) and print
    throughput and latency percentiles. Works with any Open Inference Protocol V2 server
    (ModelYard, Triton, KServe, MLServer). Exit status 1 when no request succeeded."""
    parse_target(url, model)  # bad URL or model name fails before any network
    if input_ is not None:
        body = read_input(input_)
    else:
        body = orjson.dumps(payload_from_metadata(fetch_metadata(url, model), batch=batch))
    args: dict[str, Any] = {
        "concurrency": concurrency,
        "duration_s": duration,
        "timeout_s": timeout,
    }
    if as_json:
        result = run_load_test(url, model, payload=body, **args)
        click.echo(orjson.dumps(result.as_dict()).decode())
    else:
        result = _run_with_progress(url, model, body, **args)
        Console(highlight=False).print(summary_table(result))
    if result.successes == 0:
        click.echo(f"error: no request succeeded ({result.first_error or 'no response'})", err=True)
        raise SystemExit(1)
