"""Commands for observability: ``modelyard drift report`` and ``modelyard drift reference``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson
from rich import box
from rich.table import Table
from rich.text import Text

from modelyard.cli_common import console, load_cli_settings, open_registry, registry_option, when
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.monitoring import drift
from modelyard.monitoring.drift_reports import drift_events, latest_report
from modelyard.registry.records import ModelVersion
from modelyard.types import Array

STATUS_STYLE = {"alarm": "bold red", "warn": "yellow", "ok": "green", "insufficient_data": "dim"}
EVENTS_SHOWN = 5


def register(group: click.Group) -> None:
    """Add this module's commands to the ``modelyard`` group."""
    group.add_command(drift_group)


@click.group("drift", short_help="Drift reports and reference statistics.")
def drift_group() -> None:
    """Drift detection: per-feature PSI / KS of serving data against a version's reference."""


@drift_group.command("report", short_help="Show the latest drift report of a model.")
@click.argument("model")
@click.option(
    "--version", "version", type=int, default=None, help="Version (default: newest report)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@registry_option
def report_cmd(model: str, version: int | None, as_json: bool, registry: str | None) -> None:
    """Per-feature PSI, KS and status of MODEL's newest drift report (inputs, then outputs:
    prediction drift), as computed by the controller every drift_interval_s."""
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        reg.get_model(model)  # a clear error for an unknown model
        found = latest_report(reg, model, version)
        events = drift_events(reg, model)[-EVENTS_SHOWN:]
    if found is None:
        which = model if version is None else f"{model} v{version}"
        raise NotFoundError(
            f"no drift report for {which} yet: reports need a '{drift.REFERENCE_KEY}' in the "
            "version's metadata, traffic, and a running controller"
        )
    if as_json:
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    _print_report(found, events)


def _print_report(report: dict[str, Any], events: list[dict[str, Any]]) -> None:
    out = console()
    status = report["status"]
    head = Text(f"{report['model']} v{report['version']}  ")
    head.append(status.upper(), style=STATUS_STYLE.get(status, ""))
    head.append(
        f"  {report['rows']} rows in {report['window_s']:g} s before {when(report['computed_at'])}"
    )
    out.print(head)
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("", "feature", "kind", "rows", "PSI", "KS", "status"):
        table.add_column(column, justify="right" if column in ("rows", "PSI", "KS") else "left")
    for section in ("inputs", "outputs"):
        for row in report[section]:
            ks = "" if row["ks"] is None else f"{row['ks']:.3f}"
            table.add_row(
                "input" if section == "inputs" else "output",
                row["feature"],
                row["kind"],
                str(row["rows"]),
                f"{row['psi']:.3f}",
                ks,
                Text(row["status"], style=STATUS_STYLE.get(row["status"], "")),
            )
    out.print(table)
    limits = report.get("thresholds", {})
    if limits:
        out.print(
            f"alarm: PSI > {limits['psi_alarm']:g} or KS > {limits['ks_alarm']:g} "
            f"(warn: PSI > {limits['psi_warn']:g}; at least {limits['min_rows']} rows)",
            style="dim",
        )
    for event in events:
        out.print(f"{when(event['ts'])}  {event['message']}", style="dim")


@drift_group.command("reference", short_help="Attach reference statistics to a version.")
@click.argument("model")
@click.option("--version", "version", type=int, required=True, help="Version to annotate.")
@click.option(
    "--inputs",
    "inputs_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A .npz of training-sample inputs (one array per input name, rows first).",
)
@click.option(
    "--outputs",
    "outputs_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A .npz of the model's outputs on that sample (for prediction drift).",
)
@click.option("--bins", type=int, default=drift.DEFAULT_BINS, show_default=True)
@registry_option
def reference_cmd(
    model: str,
    version: int,
    inputs_path: Path,
    outputs_path: Path | None,
    bins: int,
    registry: str | None,
) -> None:
    """Compute reference statistics from a training sample and store them in the version's
    metadata (key drift_reference), replacing any there."""
    inputs = _load_npz(inputs_path, "--inputs")
    outputs = None if outputs_path is None else _load_npz(outputs_path, "--outputs")
    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        found = reg.get_version(model, version)
        signature = found.manifest.signature
        _check_names(inputs, [s.name for s in signature.inputs], f"--inputs {inputs_path}", found)
        if outputs is not None and signature.outputs:
            where = f"--outputs {outputs_path}"
            _check_names(outputs, [s.name for s in signature.outputs], where, found)
        stats = drift.reference_stats(inputs, outputs, bins=bins)
        reg.update_metadata(model, version, {drift.REFERENCE_KEY: stats})
    console().print(
        f"{model} v{version}: drift reference with {len(stats['inputs'])} input and "
        f"{len(stats['outputs'])} output features"
    )


def _check_names(
    arrays: dict[str, Array], expected: list[str], where: str, version: ModelVersion
) -> None:
    """Serving sketches features by tensor name: an array named otherwise would never match."""
    if not arrays or set(arrays) - set(expected):
        kind = "outputs" if where.startswith("--outputs") else "inputs"
        raise InvalidInputError(
            f"{where} holds arrays {sorted(arrays)}, but the {kind} of {version.ref} are "
            f"{expected}: name each array after one of them"
        )


def _load_npz(path: Path, flag: str) -> dict[str, Array]:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{flag} {path}: not a readable .npz file: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise InvalidInputError(f"{flag} {path}: expected a .npz archive of named arrays")
    with data:
        try:
            return {name: data[name] for name in data.files}
        except ValueError as exc:  # e.g. object arrays, which would need pickle
            raise InvalidInputError(f"{flag} {path}: {exc}") from exc
