"""Commands for rollouts and shadows (registered by :mod:`modelyard.cli_traffic`).

``modelyard rollout status|pause|resume|promote|abort|events ENDPOINT`` and
``modelyard shadow report ENDPOINT``. They read and write the registry directly; servers pick
the changes up within ``watch_interval_s``.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from modelyard.cli_common import console, load_cli_settings, open_registry, registry_option, when
from modelyard.errors import FailedPreconditionError


def register(group: click.Group) -> None:
    """Add ``rollout`` and ``shadow`` to the ``modelyard`` group."""
    group.add_command(rollout_group)
    group.add_command(shadow_group)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


# ---- rollout -------------------------------------------------------------------------------------
@click.group("rollout", short_help="Watch and steer an endpoint's rollout.")
def rollout_group() -> None:
    """Rollouts move an endpoint's traffic to spec.rollout.candidate step by step; the
    controller advances a step when its gates pass and rolls back at once when one fails."""


@rollout_group.command("status", short_help="Show the state and the gates of a rollout.")
@click.argument("endpoint")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@registry_option
def status_cmd(endpoint: str, as_json: bool, registry: str | None) -> None:
    """Show the rollout of ENDPOINT: status, step, weight, why, and every gate judged now on
    the current step's window (all replicas' stats)."""
    from modelyard.control.controller import evaluate_window
    from modelyard.control.store import load_endpoint, load_rollout

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        spec = load_endpoint(reg, endpoint)
        if spec.rollout is None:
            raise FailedPreconditionError(f"endpoint {endpoint!r} has no rollout in its spec")
        stored = load_rollout(reg, endpoint)
        window = None
        now = reg.clock.wall()
        if stored is not None and stored.state.status.active:
            window = evaluate_window(reg, spec, stored.state, settings.stats_interval_s, now)
    rollout = spec.rollout
    if as_json:
        _echo_json(
            {
                "endpoint": endpoint,
                "candidate": rollout.candidate.label(),
                "steps": [s.weight for s in rollout.steps],
                "state": None if stored is None else stored.state.to_json(),
                "checks": [] if window is None else [c.to_json() for c in window.report.checks],
                "verdict": None if window is None else window.report.verdict.value,
            }
        )
        return
    out = console()
    out.print(f"endpoint   {endpoint}")
    out.print(f"candidate  {rollout.candidate.label()} -> alias {rollout.promote_alias}")
    steps = " -> ".join(f"{s.weight:g}%" for s in rollout.steps)
    if stored is None:
        out.print(f"steps      {steps}")
        out.print("status     not started (the controller starts it on its next round)")
        return
    state = stored.state
    step = min(state.step, len(rollout.steps) - 1)
    out.print(f"candidate version {state.candidate_version}")
    out.print(f"steps      {steps}")
    out.print(f"status     {state.status.value}")
    out.print(f"step       {step + 1} of {len(rollout.steps)}, weight {state.weight:g}%")
    if state.status.active:
        left = rollout.steps[step].hold_s - (now - state.step_started_at)
        out.print(f"since      {when(state.step_started_at)} (hold {max(left, 0):.0f} s left)")
    if state.reason:
        out.print(f"reason     {state.reason}")
    if window is not None:
        table = Table("gate", "verdict", "value", "limit", "detail")
        for check in window.report.checks:
            value = "" if check.value is None else f"{check.value:.4g}"
            table.add_row(check.name, check.verdict.value, value, f"{check.limit:g}", check.detail)
        out.print(table)


def _operation(action: str, short: str, help_text: str) -> click.Command:
    @click.argument("endpoint")
    @registry_option
    def command(endpoint: str, registry: str | None, **extra: Any) -> None:
        from modelyard.control.controller import operate

        settings = load_cli_settings(registry=registry)
        with open_registry(settings) as reg:
            decision = operate(reg, endpoint, action, extra.get("reason"))
        for event in decision.events:
            click.echo(f"{endpoint}: {event.message}")

    command.__doc__ = help_text
    if action == "abort":
        command = click.option("--reason", default=None, help="Why (recorded in the event log).")(
            command
        )
    return rollout_group.command(action, short_help=short)(command)


_operation(
    "pause",
    "Stop advancing the rollout.",
    "Stop advancing the rollout of ENDPOINT. The candidate keeps its weight; a failing gate "
    "still rolls it back.",
)
_operation(
    "resume",
    "Resume (or restart) the rollout.",
    "Continue the paused rollout of ENDPOINT (its step holds again from now), or restart a "
    "rolled back or aborted one from its first step.",
)
_operation(
    "promote",
    "Promote the candidate now.",
    "Promote the candidate of ENDPOINT now: move the promote alias to its version, skipping "
    "the remaining steps and gates.",
)
_operation(
    "abort",
    "Take all traffic off the candidate.",
    "Take all traffic off the candidate of ENDPOINT now. The promote alias is not touched.",
)


@rollout_group.command("events", short_help="Show the rollout's event log.")
@click.argument("endpoint")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--all", "all_kinds", is_flag=True, help="Also endpoint changes (apply, delete).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@registry_option
def events_cmd(
    endpoint: str, limit: int, all_kinds: bool, as_json: bool, registry: str | None
) -> None:
    """The newest events of ENDPOINT's rollouts, oldest first: starts, steps, promotions,
    rollbacks (with the failing gates), operator commands."""
    from modelyard.control.store import list_events

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        prefix = "" if all_kinds else "rollout."
        events = list_events(reg, endpoint, kind_prefix=prefix, limit=limit)
    if as_json:
        _echo_json(
            [{"ts": e.ts, "kind": e.kind, "message": e.message, "data": e.data} for e in events]
        )
        return
    if not events:
        click.echo(f"no events for endpoint {endpoint}")
        return
    table = Table("time", "event", "message")
    for e in events:
        table.add_row(when(e.ts), e.kind, e.message)
    console().print(table)


# ---- shadow --------------------------------------------------------------------------------------
@click.group("shadow", short_help="Compare shadow versions with the primary.")
def shadow_group() -> None:
    """Shadows get a copy of a fraction of an endpoint's requests; their outputs are compared
    with the primary's and the results stored per interval."""


@shadow_group.command("report", short_help="Agreement, errors and latency of the shadows.")
@click.argument("endpoint")
@click.option(
    "--window",
    "window_s",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Seconds of history.",
)
@click.option("--per-interval", is_flag=True, help="One row per stats interval.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@registry_option
def report_cmd(
    endpoint: str, window_s: float, per_interval: bool, as_json: bool, registry: str | None
) -> None:
    """Per shadow version of ENDPOINT, over the last --window seconds (all replicas): shadow
    requests and error rate, rows compared and agreement with the primary, mean latency
    delta (shadow - primary), shadows dropped because too many were in flight."""
    from modelyard.traffic.shadow_report import summarize_shadows
    from modelyard.traffic.stats_store import read_rows

    settings = load_cli_settings(registry=registry)
    with open_registry(settings) as reg:
        since = reg.clock.wall() - window_s
        rows = read_rows(reg, endpoint, since)
    summaries = summarize_shadows(rows, per_interval=per_interval)
    if as_json:
        _echo_json([s.to_json() for s in summaries])
        return
    if not summaries:
        click.echo(f"no shadow results for endpoint {endpoint} in the last {window_s:g} s")
        return
    columns = ["shadow", "requests", "errors", "compared", "agreement", "latency delta"]
    table = Table(*(["interval"] if per_interval else []), *columns, "dropped")
    for s in summaries:
        cells = [
            f"{s.model}@{s.version}" if s.version else f"{s.model}@?",
            str(s.requests),
            _pct(s.error_rate),
            str(s.compared),
            _pct(s.agreement),
            "" if s.mean_latency_delta_s is None else f"{s.mean_latency_delta_s * 1e3:+.2f} ms",
            str(s.dropped),
        ]
        if per_interval:
            cells.insert(0, when(s.interval_start or 0.0))
        table.add_row(*cells)
    console().print(table)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
