"""Rollout gates: judge a candidate against production in the same window (pure).

A step of a rollout advances only when every gate passes: error-rate delta, p99 latency ratio,
minimum request count, and optionally the output agreement of a shadow comparison. The inputs
are counts merged from every replica's serving stats; nothing here reads a clock or a database.

Errors are evidence that only accumulates, so the error gate fails as soon as the errors seen
cannot be outgrown. A p99 is not: one stall early in a step puts the p99 of a small window at
that stall, and judging it on every controller round would roll back healthy candidates on
noise. So the p99 ratio is judged once, over the whole step, when the step has held; before
that it fails only when the candidate's *median* is already above ``max_p99_ratio`` times
production's p99 (its p99 cannot be lower than its median: a clearly slow candidate still goes
at once).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from modelyard.traffic.spec import Gates


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class RouteWindow:
    """What one side (candidate or production) did in the window: counts, p99 and median."""

    requests: int = 0
    errors: int = 0
    p99_s: float | None = None
    p50_s: float | None = None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p99_s": self.p99_s,
            "p50_s": self.p50_s,
        }


@dataclass(frozen=True, slots=True)
class Agreement:
    """Shadow comparison of the candidate with the primary: rows compared and rows that agreed."""

    compared: int
    agreed: int

    @property
    def rate(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0


@dataclass(frozen=True, slots=True)
class Check:
    """One gate's outcome; ``value``/``limit`` are what was compared (None: not measurable)."""

    name: str
    verdict: Verdict
    value: float | None
    limit: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "value": self.value,
            "limit": self.limit,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class GateReport:
    verdict: Verdict
    checks: tuple[Check, ...]
    candidate: RouteWindow
    baseline: RouteWindow

    @property
    def reason(self) -> str:
        """The failing checks (or, when waiting, what is awaited); empty when every gate passes."""
        want = Verdict.FAIL if self.verdict is Verdict.FAIL else Verdict.WAIT
        return "; ".join(c.detail for c in self.checks if c.verdict is want)


def choose_baseline(
    window: RouteWindow,
    stored: RouteWindow | None,
    min_requests: int,
    history: RouteWindow | None = None,
) -> RouteWindow:
    """Production's window; when it has too few requests now (at a 100 % step it gets none),
    production over the whole rollout so far (``history``), else the window stored at the last
    step change."""
    if window.requests >= min_requests:
        return window
    if history is not None and history.requests >= min_requests:
        return history
    return window if stored is None else stored


def evaluate_gates(
    gates: Gates,
    candidate: RouteWindow,
    baseline: RouteWindow,
    agreement: Agreement | None = None,
    *,
    held: bool = True,
    candidate_latency: RouteWindow | None = None,
) -> GateReport:
    """Judge the candidate against production in the same window.

    FAIL when a gate is broken, WAIT while there is too little data to judge, PASS otherwise.
    An error rate fails early, before ``min_requests``, once the errors already seen exceed the
    allowed delta even if every remaining request up to ``min_requests`` succeeded. ``held``:
    the step has held for its ``hold_s`` (the window is complete), so the p99 ratio is judged;
    before that a p99 over the limit fails only on the median (see the module's text).
    ``candidate_latency``: the candidate over the same longer span as ``baseline`` when that is
    production since the rollout began (a step where production has too few requests of its
    own), so that the p99s compared cover the same stretch of time.
    """
    enough = candidate.requests >= gates.min_requests and baseline.requests >= gates.min_requests
    checks = [
        _min_requests_check(gates, candidate, baseline),
        _error_rate_check(gates, candidate, baseline, judged=enough),
        _p99_check(gates, candidate, baseline, candidate_latency, judged=enough, held=held),
    ]
    if gates.min_agreement is not None:
        checks.append(_agreement_check(gates.min_agreement, gates.min_requests, agreement))
    verdicts = {c.verdict for c in checks}
    verdict = (
        Verdict.FAIL
        if Verdict.FAIL in verdicts
        else Verdict.WAIT
        if Verdict.WAIT in verdicts
        else Verdict.PASS
    )
    return GateReport(verdict, tuple(checks), candidate, baseline)


def _min_requests_check(gates: Gates, candidate: RouteWindow, baseline: RouteWindow) -> Check:
    fewest = min(candidate.requests, baseline.requests)
    ok = fewest >= gates.min_requests
    return Check(
        "min_requests",
        Verdict.PASS if ok else Verdict.WAIT,
        float(fewest),
        float(gates.min_requests),
        f"requests: candidate {candidate.requests}, production {baseline.requests} "
        f"(need {gates.min_requests} each)",
    )


def _error_rate_check(
    gates: Gates, candidate: RouteWindow, baseline: RouteWindow, *, judged: bool
) -> Check:
    limit = gates.max_error_rate_delta
    base_rate = baseline.error_rate
    if judged:
        delta = candidate.error_rate - base_rate
    else:
        # The lowest error rate the candidate can still end up with at min_requests.
        delta = candidate.errors / max(gates.min_requests, candidate.requests) - base_rate
    detail = (
        f"error rate {candidate.error_rate:.2%} vs production {base_rate:.2%} "
        f"(delta {delta:+.2%}, max {limit:.2%})"
    )
    if not judged and candidate.requests < gates.min_requests:
        # Early: say which delta is meant (the one the candidate cannot get below any more).
        detail = (
            f"error rate at least {candidate.errors / gates.min_requests:.2%} at "
            f"{gates.min_requests} requests ({candidate.errors} errors in the first "
            f"{candidate.requests}) vs production {base_rate:.2%} "
            f"(delta at least {delta:+.2%}, max {limit:.2%})"
        )
    if delta > limit and (judged or baseline.requests >= gates.min_requests):
        return Check("error_rate", Verdict.FAIL, delta, limit, detail)
    return Check("error_rate", Verdict.PASS if judged else Verdict.WAIT, delta, limit, detail)


def _p99_check(
    gates: Gates,
    window: RouteWindow,
    baseline: RouteWindow,
    longer: RouteWindow | None,
    *,
    judged: bool,
    held: bool,
) -> Check:
    limit = gates.max_p99_ratio
    candidate = window if longer is None else longer
    if not judged or not candidate.p99_s or not baseline.p99_s:
        return Check("p99_ratio", Verdict.WAIT, None, limit, "p99 latency: not enough requests")
    ratio = candidate.p99_s / baseline.p99_s
    span = "" if longer is None else " since the rollout began"
    detail = (
        f"p99 latency {candidate.p99_s * 1e3:.1f} ms vs production {baseline.p99_s * 1e3:.1f} ms"
        f"{span} (ratio {ratio:.2f}, max {limit:g})"
    )
    if ratio <= limit:
        return Check("p99_ratio", Verdict.PASS, ratio, limit, detail)
    if held:
        return Check("p99_ratio", Verdict.FAIL, ratio, limit, detail)
    if candidate.p50_s is not None and candidate.p50_s > limit * baseline.p99_s:
        median = f"; even its median, {candidate.p50_s * 1e3:.1f} ms, is over {limit:g}x that"
        return Check("p99_ratio", Verdict.FAIL, ratio, limit, detail + median)
    # Over the limit in a partial window: judged over the whole step once it has held.
    return Check("p99_ratio", Verdict.WAIT, ratio, limit, f"{detail} so far; judged when held")


def _agreement_check(minimum: float, min_rows: int, agreement: Agreement | None) -> Check:
    if agreement is None or agreement.compared < min_rows:
        seen = 0 if agreement is None else agreement.compared
        detail = f"shadow agreement: {seen} of {min_rows} comparisons needed"
        return Check("agreement", Verdict.WAIT, None, minimum, detail)
    detail = f"shadow agreement {agreement.rate:.1%} (min {minimum:.1%})"
    verdict = Verdict.FAIL if agreement.rate < minimum else Verdict.PASS
    return Check("agreement", verdict, agreement.rate, minimum, detail)
