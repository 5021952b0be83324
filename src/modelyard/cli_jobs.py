"""Commands for offline use: batch scoring, stream scoring, materialised predictions."""

from __future__ import annotations

import click

from modelyard.cli_common import load_cli_settings, registry_option, require_registry
from modelyard.errors import InvalidInputError


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
    group.add_command(batch)
    group.add_command(stream)
    group.add_command(materialize)


# ---- batch ------------------------------------------------------------------------------------
def _column_list(text: str | None, flag: str) -> tuple[str, ...]:
    if text is None:
        return ()
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise InvalidInputError(f"{flag} {text!r}: empty column name")
    return names


def _columns_option(values: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``--columns a,b,c`` (the model's one matrix input) or ``--columns INPUT:a,b`` (repeat)."""
    out: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        target, cols = (name.strip(), rest) if sep else ("", value)
        if target in out:
            raise InvalidInputError(f"--columns names input '{target or 'the matrix input'}' twice")
        out[target] = _column_list(cols, "--columns")
    return out


@click.command(short_help="Score a table of rows (Parquet/CSV) into an output directory.")
@click.argument("model", metavar="NAME[@ALIAS|:VERSION]")
@click.option(
    "--input",
    "input_",
    metavar="PATH_OR_URL",
    required=True,
    help="A Parquet or CSV file, or a directory of them (local, file://, s3://).",
)
@click.option(
    "--output",
    metavar="PATH_OR_URL",
    required=True,
    help="Output directory: one file per input part plus the job manifest.",
)
@click.option(
    "--key",
    metavar="COLUMNS",
    default=None,
    help="Comma-separated columns copied to the output to identify rows. "
    "Without it, the output gets _source (input file) and _row (row in that file).",
)
@click.option(
    "--columns",
    "columns",
    metavar="[INPUT:]COLUMNS",
    multiple=True,
    help="Columns that feed a model input, in order (repeat per input). Default: the "
    "version's feature_names, a column named like the input, or the first numeric "
    "non-key columns.",
)
@click.option(
    "--outputs",
    metavar="NAMES",
    default=None,
    help="Comma-separated model outputs to write (default: all).",
)
@click.option(
    "--batch-rows",
    type=int,
    default=65_536,
    show_default=True,
    help="Rows per inference call (memory grows with it).",
)
@click.option(
    "--part-rows",
    type=int,
    default=1_000_000,
    show_default=True,
    help="Rows per output part, the unit of resumption (whole Parquet row groups).",
)
@click.option(
    "--output-format", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True
)
@click.option(
    "--in-flight",
    type=int,
    default=2,
    show_default=True,
    help="Batches scored at once (overlaps reading, inference and writing).",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Discard the parts a previous run left in --output and start over.",
)
@click.option(
    "--url",
    metavar="SERVER",
    default=None,
    help="Score through a ModelYard server (e.g. http://host:8080) instead of in this process.",
)
@click.option(
    "--progress/--no-progress",
    "show_bar",
    default=None,
    help="Draw a progress bar (default: when stderr is a terminal).",
)
@registry_option
def batch(
    model: str,
    input_: str,
    output: str,
    key: str | None,
    columns: tuple[str, ...],
    outputs: str | None,
    batch_rows: int,
    part_rows: int,
    output_format: str,
    in_flight: int,
    restart: bool,
    url: str | None,
    show_bar: bool | None,
    registry: str | None,
) -> None:
    """Score every row of --input with MODEL and write the predictions, with the key columns,
    to --output. Rerunning the same command after a crash resumes: finished parts are skipped,
    so every row ends up in the output exactly once. A rerun whose model reference now
    resolves to another version is refused (write to a new --output, or pass --restart).
    """
    from modelyard.cli_predict import parse_model_ref
    from modelyard.jobs.batch import BatchJob, run_batch
    from modelyard.jobs.progress import RichProgress
    from modelyard.jobs.scoring import LocalScorer, RemoteScorer, Scorer
    from modelyard.registry.registry import s3_storage_options

    name, ref = parse_model_ref(model)
    settings = load_cli_settings(registry=registry)
    job = BatchJob(
        input=input_,
        output=output,
        keys=_column_list(key, "--key"),
        columns=_columns_option(columns),
        outputs=_column_list(outputs, "--outputs") or None,
        batch_rows=batch_rows,
        part_rows=part_rows,
        output_format=output_format,
        in_flight=in_flight,
        restart=restart,
        storage_options=s3_storage_options(settings),
    )
    if not url:
        require_registry(settings)
    scorer: Scorer = (
        RemoteScorer(url, name, ref, concurrency=in_flight)
        if url
        else LocalScorer(settings, name, ref)
    )
    try:
        result = run_batch(job, scorer, progress=RichProgress(bar=show_bar))
    finally:
        scorer.close()
    rate = result.rows_scored / result.seconds if result.seconds > 0 else 0.0
    click.echo(
        f"{result.model}:{result.version}: scored {result.rows_scored:,} rows in "
        f"{result.parts - result.parts_skipped} parts ({result.parts_skipped} already done) "
        f"in {result.seconds:.1f} s ({rate:,.0f} rows/s); {result.rows_total:,} rows in "
        f"{result.output}"
    )
    fed = "; ".join(f"{name} <- {', '.join(cols)}" for name, cols in result.inputs.items())
    click.echo(f"model inputs from columns: {fed} (name them with --columns to choose)", err=True)


# ---- stream and materialize -------------------------------------------------------------------
@click.command(short_help="Score a broker stream into another, at least once.")
@click.argument("model", metavar="NAME[@ALIAS|:VERSION]")
@click.option(
    "--source",
    metavar="URL",
    required=True,
    help="redis://HOST:PORT/DB?stream=S, nats://HOST:PORT?subject=S&stream=X or "
    "kafka://HOST:PORT?topic=T.",
)
@click.option("--sink", metavar="URL", required=True, help="Where results go (same URL forms).")
@click.option(
    "--dead-letter",
    metavar="URL",
    default=None,
    help="Where poison messages go, with their error. Default: the source's stream, subject "
    "or topic + '.dead-letter'.",
)
@click.option("--group", default=None, help="Consumer group. Default: modelyard-NAME.")
@click.option(
    "--consumer",
    default=None,
    help="This member's name in the group (keep it across restarts). Default: the host name.",
)
@click.option(
    "--max-in-flight",
    type=int,
    default=512,
    show_default=True,
    help="Messages fetched and not yet acknowledged, at most (backpressure).",
)
@click.option(
    "--batch",
    "batch_size",
    type=int,
    default=64,
    show_default=True,
    help="Messages per fetch, scored together (the model's batcher merges them).",
)
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus /metrics on this port."
)
@click.option(
    "--lag-interval",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds between consumer-lag log lines.",
)
@registry_option
def stream(
    model: str,
    source: str,
    sink: str,
    dead_letter: str | None,
    group: str | None,
    consumer: str | None,
    max_in_flight: int,
    batch_size: int,
    metrics_port: int | None,
    lag_interval: float,
    registry: str | None,
) -> None:
    """Consume --source, score every message with MODEL and write the results to --sink.
    A message is acknowledged only after its result (or dead letter) is written; SIGTERM
    finishes what is in flight first. Messages: {"id": ..., "inputs": {NAME: rows}} or a V2
    request body; results: {"id", "model", "version", "outputs"}.
    """
    import asyncio

    from modelyard.app import build_app
    from modelyard.cli_predict import parse_model_ref
    from modelyard.jobs.stream import StreamOptions
    from modelyard.jobs.stream_run import StreamJob, run_stream
    from modelyard.monitoring.logs import configure_logging

    name, ref = parse_model_ref(model)
    settings = load_cli_settings(registry=registry)
    job = StreamJob(
        model=name,
        ref=None if ref is None else str(ref),
        source=source,
        sink=sink,
        dead_letter=dead_letter,
        group=group,
        consumer=consumer,
        options=StreamOptions(
            max_in_flight=max_in_flight, batch=batch_size, lag_interval_s=lag_interval
        ),
        metrics_port=metrics_port,
    )
    configure_logging(settings)
    require_registry(settings)
    app = build_app(settings, features=False)
    try:
        stats = asyncio.run(run_stream(app, job))
    finally:
        app.close()
    click.echo(
        f"stream stopped: {stats.scored:,} scored, {stats.dead_lettered:,} dead-lettered, "
        f"{stats.left_unacked:,} left for redelivery"
    )


@click.command(short_help="Precompute predictions for a bounded input domain into a table.")
@click.argument("model", metavar="NAME[@ALIAS|:VERSION]")
@click.option(
    "--input",
    "input_",
    metavar="KEYS",
    required=True,
    help="The rows: a Parquet or CSV file or directory (local, s3://), a .json file or "
    "inline JSON text holding a list of row objects.",
)
@click.option("--table", required=True, help="SQL table to upsert into (created when missing).")
@click.option(
    "--db",
    metavar="URL",
    default=None,
    help="sqlite:///PATH, postgresql://... or a file path. Default: the registry's database.",
)
@click.option("--key", default="id", show_default=True, help="The column that names a row.")
@click.option(
    "--columns",
    "columns",
    metavar="[INPUT:]COLUMNS",
    multiple=True,
    help="Columns that feed a model input, in order (as for modelyard batch).",
)
@click.option("--batch-rows", type=int, default=8192, show_default=True)
@registry_option
def materialize(
    model: str,
    input_: str,
    table: str,
    db: str | None,
    key: str,
    columns: tuple[str, ...],
    batch_rows: int,
    registry: str | None,
) -> None:
    """Score every row of --input with MODEL and upsert the predictions into --table, one
    row per key, stamped with the model and version. Rerun to refresh; an endpoint route
    with `materialized: {table: ...}` serves the rows.
    """
    from modelyard.cli_common import open_registry
    from modelyard.cli_predict import parse_model_ref
    from modelyard.jobs.materialize import MaterializeJob
    from modelyard.jobs.materialize import materialize as run_materialize
    from modelyard.jobs.scoring import LocalScorer
    from modelyard.registry.registry import s3_storage_options
    from modelyard.traffic.materialized import db_store

    name, ref = parse_model_ref(model)
    settings = load_cli_settings(registry=registry)
    job = MaterializeJob(
        input=input_,
        table=table,
        key=key,
        columns=_columns_option(columns),
        batch_rows=batch_rows,
        storage_options=s3_storage_options(settings),
    )
    with open_registry(settings) as reg:
        store = reg.store if db is None else db_store(db)
        scorer = LocalScorer(settings, name, ref)
        try:
            result = run_materialize(job, scorer, store, clock=reg.clock)
        finally:
            scorer.close()
            if db is not None:
                store.close()
    click.echo(
        f"{result.model}:{result.version}: {result.rows:,} rows upserted into {result.table} "
        f"({result.db}) in {result.seconds:.1f} s"
    )
