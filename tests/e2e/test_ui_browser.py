"""The dashboard in a real browser: headless Chromium (Debian ``chromium``, driven by Playwright
without a browser download) opens ``/ui`` on a real server while clients send traffic, waits
until every table and chart is populated, saves a screenshot (a CI artifact) and checks the page
ran without a single JavaScript error.

The registry holds three models and two endpoints: ``ab-simple`` splits 70/30 between two
versions of ``simple``; ``scoring`` rolls ``linear`` version 2 out (held at its first step) and
is sent inputs whose first feature is shifted against version 1's drift reference, so the
controller raises a drift alarm on it. Some requests to ``identity_fp32`` are malformed, so its
error-rate chart is not flat.

Needs ``/usr/bin/chromium`` (or ``MODELYARD_CHROMIUM``) and the ``playwright`` package: missing
either fails under ``CI`` and skips otherwise. The screenshot goes to ``$MODELYARD_ARTIFACTS_DIR``
(default: ``artifacts/`` at the repository root).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.monitoring.drift import reference_stats
from modelyard.registry.endpoints import EndpointStore
from modelyard.registry.registry import Registry
from modelyard.types import Datatype
from tests.serverproc import ROOT, ServerProcess, start_server
from tests.testmodels import identity_model, linear_fp32_model, simple_model

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("MODELYARD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
FEATURES = 4
SHIFT = 3.0  # added to feature 0 of every `scoring` request: a drift alarm on input[0]
ROWS = 32  # per `scoring` request
DRIFT_ROWS = 300  # rows a drift report needs: enough that only the shifted feature alarms
WAIT_MS = 60_000
SERVER_ENV = {
    "MODELYARD_STATS_INTERVAL_S": "1",
    "MODELYARD_WATCH_INTERVAL_S": "0.5",
    "MODELYARD_CONTROLLER_INTERVAL_S": "0.5",
    "MODELYARD_DRIFT_INTERVAL_S": "1",
    "MODELYARD_DRIFT_WINDOW_S": "60",
    "MODELYARD_DRIFT_MIN_ROWS": str(DRIFT_ROWS),
}


def require_browser() -> None:
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is missing (pip install playwright)")
    if problems:
        message = "the browser test needs " + " and ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("MODELYARD_ARTIFACTS_DIR") or ROOT / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- the server and its traffic ------------------------------------------------------------------
def populate(registry: Registry, tmp: Path) -> None:
    simple = simple_model(tmp / "simple.onnx")
    registry.push(simple, name="simple", alias="production")
    registry.push(simple, name="simple", metadata={"note": "B arm"})
    linear = linear_fp32_model(tmp / "linear.onnx", n_features=FEATURES)
    x = np.random.default_rng(0).normal(size=(2000, FEATURES)).astype(np.float32)
    reference = reference_stats({"input": x}, {"output": x.sum(axis=1, keepdims=True)})
    registry.push(
        linear, name="linear", alias="production", metadata={"drift_reference": reference}
    )
    registry.push(linear, name="linear", alias="candidate")
    registry.push(identity_model(Datatype.FP32, tmp / "id.onnx"), name="identity_fp32")
    store = EndpointStore(registry)
    store.apply(
        {
            "name": "ab-simple",
            "sticky_key": "x-user",
            "routes": [
                {"name": "a", "model": "simple", "version": 1, "weight": 70},
                {"name": "b", "model": "simple", "version": 2, "weight": 30},
            ],
        }
    )
    store.apply(
        {
            "name": "scoring",
            "timeout_ms": 1000,
            "routes": [
                {"name": "stable", "model": "linear", "version": "production", "weight": 100}
            ],
            "fallback": {"on": ["error"], "chain": [{"kind": "model", "model": "linear"}]},
            "rollout": {
                "candidate": {"model": "linear", "version": "candidate"},
                "steps": [{"weight": w, "hold_s": 3600} for w in (20, 50, 100)],
                "gates": {"min_requests": 1_000_000},  # never enough: it holds at step 1
            },
        }
    )


def tensor(name: str, datatype: str, data: np.ndarray) -> dict[str, Any]:
    return {"name": name, "shape": list(data.shape), "datatype": datatype, "data": data.tolist()}


class Traffic:
    """A client thread calling both endpoints and one plain model until stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = np.random.default_rng(1)
        ints = np.arange(16, dtype=np.int32).reshape(1, 16)
        simple = {"inputs": [tensor("INPUT0", "INT32", ints), tensor("INPUT1", "INT32", ints)]}
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
                x[:, 0] += SHIFT
                client.post("/v2/models/ab-simple/infer", json=simple, headers={"x-user": f"u{n}"})
                client.post(
                    "/v2/models/scoring/infer", json={"inputs": [tensor("input", "FP32", x)]}
                )
                name = "WRONG" if n % 5 == 0 else "INPUT0"  # a 400: an error in the charts
                client.post(
                    "/v2/models/identity_fp32/infer",
                    json={"inputs": [tensor(name, "FP32", x[:2, :2])]},
                )
                self.sent += 3
                self.stop.wait(0.03)  # pacing (a steady rate), not synchronisation

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    require_browser()
    with Registry(tmp_path / "reg") as registry:
        populate(registry, tmp_path)
    proc = start_server(tmp_path / "reg", env=SERVER_ENV)
    try:
        yield proc
    finally:
        proc.terminate()


# ---- the browser ---------------------------------------------------------------------------------
def count(selector: str) -> str:
    return f"document.querySelectorAll({selector!r}).length"


def chart_ready(model: str) -> str:
    """JS: the model's card has p99 points (steps with requests) in at least 3 steps."""
    card = f'.chart-card[data-model="{model}"]'
    p99 = f"document.querySelector('{card} svg[data-metric=\"p99_s\"]')"
    return f"({p99} !== null && Number({p99}.dataset.points) >= 3)"


CONDITIONS = {
    "models table has 3 rows": f"{count('#models-table tbody tr[data-model]')} === 3",
    "endpoints table has 2 rows": f"{count('#endpoints-table tbody tr[data-endpoint]')} === 2",
    "cache table lists the loaded versions": f"{count('#cache-table tbody tr[data-entry]')} >= 4",
    "aliases are shown": f"{count('#models-table .chip.alias')} >= 3",
    "split bars are drawn": f"{count('#endpoints-table .split-legend .legend-item')} >= 4",
    "charts of every model": " && ".join(
        chart_ready(m) for m in ("simple", "linear", "identity_fp32")
    ),
    "identity_fp32 shows errors": (
        'Number(document.querySelector(\'.chart-card[data-model="identity_fp32"] '
        'svg[data-metric="error_rate"]\')?.dataset.active) >= 1'
    ),
    "the rollout runs at step 1": (
        "document.querySelector('tr[data-endpoint=\"scoring\"] .progress')"
        "?.dataset.weight === '20' && document.querySelector('tr[data-endpoint=\"scoring\"] "
        ".rollout .badge')?.textContent === 'running'"
    ),
    "drift alarm on linear v1": (
        "document.querySelector('tr[data-drift=\"linear:1\"] .badge')?.textContent === 'alarm'"
    ),
    "KPIs are filled": "document.getElementById('kpi-rps').textContent !== '\\u2013'",
}


@contextmanager
def browser_page(url: str, errors: list[str]) -> Iterator[Any]:
    """A Chromium page on ``url``; JavaScript errors, console errors and failed requests are
    appended to ``errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
            )
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            response = page.goto(url)
            assert response is not None and response.status == 200
            yield page
        finally:
            browser.close()


def wait_until(page: Any, what: str, condition: str, shot: Path, errors: list[str]) -> None:
    """Poll the DOM until the JS ``condition`` holds; on timeout, save a screenshot and fail."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.wait_for_function(f"() => {condition}", timeout=WAIT_MS)
    except PlaywrightError as exc:
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{what}: not within {WAIT_MS} ms ({exc}); {errors}") from None


def test_dashboard_in_chromium(server: ServerProcess) -> None:
    errors: list[str] = []
    shot = artifacts_dir() / "ui.png"
    with Traffic(server.base_url) as traffic, browser_page(server.base_url + "/ui", errors) as page:
        for what, condition in CONDITIONS.items():
            wait_until(page, what, condition, shot, errors)
        page.screenshot(path=str(shot), full_page=True)
        print(f"dashboard screenshot: {shot}")
        assert traffic.sent > 0
        check_page(page)
        check_controls(page)
    assert errors == [], errors
    assert shot.stat().st_size > 10_000


def test_an_empty_registry_renders_without_errors(tmp_path: Path) -> None:
    require_browser()
    Registry(tmp_path / "reg").close()
    proc = start_server(tmp_path / "reg")
    errors: list[str] = []
    shot = artifacts_dir() / "ui-empty.png"
    try:
        with browser_page(proc.base_url + "/ui", errors) as page:
            for what, condition in EMPTY_CONDITIONS.items():
                wait_until(page, what, condition, shot, errors)
            page.screenshot(path=str(shot), full_page=True)
            assert "No models" in page.inner_text("#models-table")
    finally:
        proc.terminate()
    assert errors == [], errors


EMPTY_CONDITIONS = {
    "every table shows its empty row": f"{count('tbody tr.empty')} === 4",
    "the live series was read": "document.body.dataset.seriesAt !== undefined",
    "no charts, a hint instead": (
        f"{count('.chart-card')} === 0 && !document.getElementById('charts-empty').hidden"
    ),
}


def check_controls(page: Any) -> None:
    """The range selector re-polls at once; hovering a chart shows its value."""
    page.select_option("#range", "15")  # 15 minutes at 5 s steps
    page.wait_for_function(
        "() => document.getElementById('charts-note').textContent.includes('5 s steps')",
        timeout=WAIT_MS,
    )
    chart = page.locator('.chart-card[data-model="simple"] svg[data-metric="rps"]')
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] - 20, box["y"] + box["height"] / 2)
    page.wait_for_function("() => !document.getElementById('tooltip').hidden", timeout=WAIT_MS)
    assert "requests / s" in page.inner_text("#tooltip")


def check_page(page: Any) -> None:
    """What the screenshot shows, read back from the DOM."""
    text = page.inner_text("#endpoints-table")
    assert "70 %" in text and "30 %" in text  # ab-simple's configured split
    assert "candidate" in text and "linear@candidate" in text
    models = page.inner_text("#models-table")
    assert "production → v1" in models and "candidate → v2" in models
    drift = page.inner_text('tr[data-drift="linear:1"]')
    assert "inputs:input[0]" in drift and "input[1]" not in drift  # the shifted feature only
    assert page.get_attribute("#live", "class") == "live"  # not offline
