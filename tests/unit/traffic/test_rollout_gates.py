"""Rollout gates: table-driven, pure (no clock, no database)."""

from __future__ import annotations

import pytest

from modelyard.traffic.gates import (
    Agreement,
    RouteWindow,
    Verdict,
    choose_baseline,
    evaluate_gates,
)
from modelyard.traffic.spec import Gates

GATES = Gates(max_error_rate_delta=0.01, max_p99_ratio=1.5, min_requests=100)
HEALTHY = RouteWindow(requests=500, errors=1, p99_s=0.010)


@pytest.mark.parametrize(
    ("case", "candidate", "baseline", "verdict", "failing"),
    [
        ("healthy", RouteWindow(200, 0, 0.011), HEALTHY, Verdict.PASS, set()),
        ("equal p99", RouteWindow(200, 0, 0.010), HEALTHY, Verdict.PASS, set()),
        ("p99 just under", RouteWindow(200, 0, 0.0149), HEALTHY, Verdict.PASS, set()),
        ("p99 3x", RouteWindow(200, 0, 0.030), HEALTHY, Verdict.FAIL, {"p99_ratio"}),
        ("5% errors", RouteWindow(200, 10, 0.010), HEALTHY, Verdict.FAIL, {"error_rate"}),
        ("delta under limit", RouteWindow(500, 5, 0.010), HEALTHY, Verdict.PASS, set()),
        (
            "errors and slow",
            RouteWindow(200, 20, 0.030),
            HEALTHY,
            Verdict.FAIL,
            {"error_rate", "p99_ratio"},
        ),
        ("too few candidate", RouteWindow(50, 0, 0.010), HEALTHY, Verdict.WAIT, set()),
        (
            "too few production",
            RouteWindow(200, 0, 0.01),
            RouteWindow(10, 0, 0.01),
            Verdict.WAIT,
            set(),
        ),
        # 5 errors in 40 requests: even 60 more successes leave 5 % > 1 % + production's 0.2 %.
        ("early error fail", RouteWindow(40, 5, 0.010), HEALTHY, Verdict.FAIL, {"error_rate"}),
        # 1 error in 40: 60 more successes would make it 1 %, within the limit: wait.
        ("early error wait", RouteWindow(40, 1, 0.010), HEALTHY, Verdict.WAIT, set()),
        # Early failure needs a production baseline to compare with.
        (
            "early, no baseline",
            RouteWindow(40, 40, None),
            RouteWindow(5, 0, 0.01),
            Verdict.WAIT,
            set(),
        ),
        (
            "production errs too",
            RouteWindow(200, 10, 0.01),
            RouteWindow(200, 9, 0.01),
            Verdict.PASS,
            set(),
        ),
        (
            "all failed, no latency",
            RouteWindow(200, 200, None),
            HEALTHY,
            Verdict.FAIL,
            {"error_rate"},
        ),
    ],
)
def test_gate_table(
    case: str,
    candidate: RouteWindow,
    baseline: RouteWindow,
    verdict: Verdict,
    failing: set[str],
) -> None:
    report = evaluate_gates(GATES, candidate, baseline)
    assert report.verdict is verdict, (case, report.checks)
    assert {c.name for c in report.checks if c.verdict is Verdict.FAIL} == failing
    if verdict is Verdict.FAIL:
        assert report.reason  # the event log records why
        for name in failing:
            assert {"error_rate": "error rate", "p99_ratio": "p99"}[name] in report.reason


@pytest.mark.parametrize(
    ("agreement", "verdict"),
    [
        (None, Verdict.WAIT),
        (Agreement(compared=50, agreed=50), Verdict.WAIT),  # fewer than min_requests rows
        (Agreement(compared=1000, agreed=990), Verdict.PASS),
        (Agreement(compared=1000, agreed=950), Verdict.PASS),
        (Agreement(compared=1000, agreed=949), Verdict.FAIL),
        (Agreement(compared=1000, agreed=900), Verdict.FAIL),
    ],
)
def test_agreement_gate(agreement: Agreement | None, verdict: Verdict) -> None:
    gates = GATES.model_copy(update={"min_agreement": 0.95})
    report = evaluate_gates(gates, RouteWindow(200, 0, 0.01), HEALTHY, agreement)
    assert report.verdict is verdict
    check = next(c for c in report.checks if c.name == "agreement")
    assert check.verdict is verdict
    if verdict is Verdict.FAIL:
        assert "agreement" in report.reason


def test_agreement_gate_absent_unless_configured() -> None:
    report = evaluate_gates(GATES, RouteWindow(200, 0, 0.01), HEALTHY, Agreement(100, 0))
    assert "agreement" not in {c.name for c in report.checks}
    assert report.verdict is Verdict.PASS


def test_waiting_reason_names_what_is_missing() -> None:
    report = evaluate_gates(GATES, RouteWindow(30, 0, 0.01), HEALTHY)
    assert report.verdict is Verdict.WAIT
    assert "candidate 30" in report.reason
    assert "need 100" in report.reason


def test_report_keeps_its_inputs() -> None:
    cand = RouteWindow(200, 0, 0.011)
    report = evaluate_gates(GATES, cand, HEALTHY)
    assert report.candidate == cand
    assert report.baseline == HEALTHY
    assert [c.to_json()["name"] for c in report.checks] == [
        "min_requests",
        "error_rate",
        "p99_ratio",
    ]


@pytest.mark.parametrize(
    ("case", "p99_s", "p50_s", "verdict"),
    [
        # The window is partial: a p99 over the limit waits for the whole step...
        ("p99 over, median fine", 0.030, 0.010, Verdict.WAIT),
        ("p99 over, median at the limit", 0.030, 0.015, Verdict.WAIT),
        ("p99 over, median unknown", 0.030, None, Verdict.WAIT),
        # ... unless even the median is over the limit times production's p99.
        ("median over the limit", 0.030, 0.016, Verdict.FAIL),
        ("p99 within", 0.014, 0.010, Verdict.PASS),
    ],
)
def test_p99_before_the_step_has_held(
    case: str, p99_s: float, p50_s: float | None, verdict: Verdict
) -> None:
    candidate = RouteWindow(200, 0, p99_s, p50_s)
    report = evaluate_gates(GATES, candidate, HEALTHY, held=False)
    (check,) = [c for c in report.checks if c.name == "p99_ratio"]
    assert check.verdict is verdict, (case, check)
    assert check.value == pytest.approx(p99_s / HEALTHY.p99_s)  # type: ignore[operator]
    if verdict is Verdict.WAIT:
        assert "judged when held" in check.detail
    if verdict is Verdict.FAIL:
        assert "median, 16.0 ms" in report.reason
    # Once the step has held, the same window is judged on its p99 alone.
    held = evaluate_gates(GATES, candidate, HEALTHY, held=True)
    assert held.verdict is (Verdict.PASS if p99_s <= 0.015 else Verdict.FAIL)


BIG = RouteWindow(300, 3, 0.02)
SMALL = RouteWindow(10, 0, 0.01)


@pytest.mark.parametrize(
    ("window", "stored", "history", "expected"),
    [
        (RouteWindow(500, 0, 0.01), BIG, None, RouteWindow(500, 0, 0.01)),
        (RouteWindow(0, 0, None), BIG, None, BIG),
        (SMALL, None, None, SMALL),
        # Too few in the window: production over the whole rollout, when it has enough ...
        (RouteWindow(0, 0, None), BIG, RouteWindow(900, 9, 0.05), RouteWindow(900, 9, 0.05)),
        (SMALL, None, RouteWindow(900, 9, 0.05), RouteWindow(900, 9, 0.05)),
        # ... else the window stored at the last step change.
        (RouteWindow(0, 0, None), BIG, RouteWindow(50, 0, 0.05), BIG),
        # Enough in the window: the window, the same moment as the candidate's.
        (RouteWindow(500, 0, 0.01), BIG, RouteWindow(900, 9, 0.05), RouteWindow(500, 0, 0.01)),
    ],
)
def test_choose_baseline(
    window: RouteWindow,
    stored: RouteWindow | None,
    history: RouteWindow | None,
    expected: RouteWindow,
) -> None:
    assert choose_baseline(window, stored, 100, history) == expected


def test_error_rate_of_empty_window_is_zero() -> None:
    assert RouteWindow().error_rate == 0.0
    assert Agreement(0, 0).rate == 0.0
