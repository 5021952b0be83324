"""``modelyard idle`` (versions without traffic) and ``modelyard cache`` (a server's model
cache), through click's runner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.core.clock import FakeClock
from modelyard.core.usage import UsageRecorder
from modelyard.registry import Registry
from tests.unit.fleet.test_usage import event
from tests.unit.registry.fakes import FakeModel

DOC: dict[str, Any] = {
    "budget_bytes": 2**30,
    "bytes_in_use": 3 * 2**20,
    "rss_bytes": 200 * 2**20,
    "pid": 4242,
    "stats": {"hits": 9, "misses": 1, "hit_ratio": 0.9, "loads": 1, "evictions": 0},
    "entries": [
        {
            "model": "fraud",
            "version": 4,
            "state": "READY",
            "bytes": 3 * 2**20,
            "in_flight": 0,
            "pinned": True,
            "idle_s": 1.5,
            "fetch_s": 0.012,
            "load_s": 0.034,
            "warmup_s": 0.002,
            "first_request_s": 0.001,
        }
    ],
    "disk": {"root": "/var/cache/modelyard", "budget_bytes": 2**34, "bytes": 2**20, "entries": 1},
}


def test_idle_lists_versions_without_recent_traffic(tmp_path: Path) -> None:
    reg_dir = tmp_path / "reg"
    clock = FakeClock(wall_start=time.time() - 41 * 86400)  # the CLI reads the real time
    with Registry(reg_dir, clock=clock) as reg:
        reg.push(FakeModel(), name="old", alias="production")
        reg.push(FakeModel(), name="used")
        clock.advance(40 * 86400)
        rec = UsageRecorder(reg, clock=clock)
        rec.on_infer(event("used", "1"))
        rec.flush()
    runner = CliRunner()
    result = runner.invoke(main, ["idle", "--days", "30", "--registry", str(reg_dir), "--json"])
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.output.splitlines()]
    assert [(r["model"], r["version"], r["aliases"], r["requests"]) for r in rows] == [
        ("old", 1, ["production"], 0)
    ]
    table = runner.invoke(
        main, ["idle", "--days", "30", "--registry", str(reg_dir)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0 and "never" in table.output and "old" in table.output
    bad = runner.invoke(main, ["idle", "--days", "-1", "--registry", str(reg_dir)])
    assert bad.exit_code == 2 and "--days" in bad.output


def test_cache_prints_a_running_servers_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_get(url: str, **kwargs: Any) -> httpx.Response:
        asked.append(url)
        return httpx.Response(200, json=DOC)

    monkeypatch.setattr(httpx, "get", fake_get)
    runner = CliRunner()
    result = runner.invoke(main, ["cache", "--url", "http://host:9000/"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert asked == ["http://host:9000/v2/fleet/cache"]
    assert "hit ratio 0.900" in result.output
    assert "model cache of pid 4242:" in result.output
    assert "fraud" in result.output and "34.0" in result.output  # load time in ms
    raw = runner.invoke(main, ["cache", "--url", "http://host:9000", "--json"])
    assert orjson.loads(raw.output) == DOC


def test_cache_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(url: str, **kwargs: Any) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    monkeypatch.setattr(httpx, "get", refused)
    runner = CliRunner()
    result = runner.invoke(main, ["cache", "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 1 and "cannot reach the server" in result.output
    result = runner.invoke(main, ["cache", "--url", "ftp://x"])
    assert result.exit_code == 1 and "--url must start with http" in result.output
