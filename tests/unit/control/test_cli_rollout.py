"""``modelyard rollout ...`` and ``modelyard shadow report`` through click (no server)."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from modelyard.cli import main
from modelyard.traffic.stats import SHADOW_ROUTE, RouteStats, StatsRow
from modelyard.traffic.stats_store import write_rows
from tests.unit.control.conftest import HOLD, WALL0, Env, spec


def cli(env: Env, *args: str) -> Result:
    registry = str(env.registry.store.describe()).removeprefix("sqlite:///")
    return CliRunner().invoke(main, [*args, "--registry", f"sqlite:///{registry}"])


def test_status_before_and_after_start(env: Env) -> None:
    out = cli(env, "rollout", "status", "fraud-ep")
    assert out.exit_code == 0, out.output
    assert "not started" in out.output
    env.controller.round()
    env.clock.advance(HOLD / 2)
    env.healthy_interval(errors=1)
    out = cli(env, "rollout", "status", "fraud-ep")
    assert out.exit_code == 0, out.output
    assert "running" in out.output and "weight 20%" in out.output
    assert "error_rate" in out.output and "p99_ratio" in out.output
    data = json.loads(cli(env, "rollout", "status", "fraud-ep", "--json").output)
    assert data["state"]["status"] == "running"
    assert data["verdict"] == "pass"
    assert {c["name"] for c in data["checks"]} == {"min_requests", "error_rate", "p99_ratio"}
    assert data["steps"] == [20, 50, 80, 100]


def test_operator_commands_and_events(env: Env) -> None:
    env.controller.round()
    out = cli(env, "rollout", "pause", "fraud-ep")
    assert out.exit_code == 0, out.output
    assert "paused at step 1" in out.output
    out = cli(env, "rollout", "pause", "fraud-ep")
    assert out.exit_code == 1
    assert "error: rollout is paused, not running" in out.output
    assert cli(env, "rollout", "resume", "fraud-ep").exit_code == 0
    out = cli(env, "rollout", "abort", "fraud-ep", "--reason", "smoke test failed")
    assert out.exit_code == 0 and "smoke test failed" in out.output
    events = json.loads(cli(env, "rollout", "events", "fraud-ep", "--json").output)
    assert events[0]["kind"] == "rollout.started"
    assert {e["kind"] for e in events} >= {"rollout.paused", "rollout.aborted"}
    table = cli(env, "rollout", "events", "fraud-ep")
    assert "rollout.aborted" in table.output
    everything = cli(env, "rollout", "events", "fraud-ep", "--all", "--json")
    assert "endpoint.applied" in {e["kind"] for e in json.loads(everything.output)}
    out = cli(env, "rollout", "promote", "fraud-ep")
    assert out.exit_code == 0 and "production" in out.output
    assert env.registry.aliases("fraud")["production"] == 2


def test_errors_are_one_red_line(env: Env) -> None:
    out = cli(env, "rollout", "status", "nope")
    assert out.exit_code == 1 and "endpoint 'nope' not found" in out.output
    env.endpoints.apply({**spec(), "rollout": None})
    out = cli(env, "rollout", "status", "fraud-ep")
    assert out.exit_code == 1 and "has no rollout" in out.output
    assert "no events" in cli(env, "rollout", "events", "nope").output


def test_shadow_report(env: Env) -> None:
    def row(start: float, version: int, compared: int, agreed: int) -> StatsRow:
        stats = RouteStats()
        for _ in range(compared):
            stats.record("OK", 0.002)
        shadow = stats.shadow_stats()
        shadow.compared, shadow.agreed = compared, agreed
        shadow.latency_delta_sum_s, shadow.latency_delta_n = 0.001 * compared, compared
        return StatsRow("r1", start, "fraud-ep", SHADOW_ROUTE, "fraud", version, stats)

    write_rows(env.registry, [row(WALL0, 2, 100, 90), row(WALL0 + 10, 2, 100, 92)], 10)
    out = cli(env, "shadow", "report", "fraud-ep", "--window", "1e10")
    assert out.exit_code == 0, out.output
    assert "fraud@2" in out.output and "91.0%" in out.output and "+1.00 ms" in out.output
    per = json.loads(
        cli(
            env, "shadow", "report", "fraud-ep", "--window", "1e10", "--per-interval", "--json"
        ).output
    )
    assert [p["agreement"] for p in per] == [0.9, 0.92]
    empty = cli(env, "shadow", "report", "fraud-ep")  # the rows are from 2023: out of window
    assert "no shadow results" in empty.output
