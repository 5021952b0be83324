"""Rollout state machine and effective weights: table-driven, pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from modelyard.errors import FailedPreconditionError, InvalidInputError
from modelyard.traffic import rollout as ro
from modelyard.traffic.gates import RouteWindow, evaluate_gates
from modelyard.traffic.rollout import CANDIDATE_ROUTE, RolloutState, Status
from modelyard.traffic.spec import EndpointSpec, Rollout, parse_spec

T0 = 1_700_000_000.0
SPEC: dict[str, Any] = {
    "name": "fraud",
    "routes": [
        {"name": "a", "model": "fraud", "version": "production", "weight": 75},
        {"name": "b", "model": "fraud-b", "weight": 25},
    ],
    "rollout": {
        "candidate": {"model": "fraud", "version": "candidate"},
        "steps": [
            {"weight": 20, "hold_s": 60},
            {"weight": 50, "hold_s": 60},
            {"weight": 80, "hold_s": 60},
            {"weight": 100, "hold_s": 60},
        ],
        "gates": {"max_error_rate_delta": 0.01, "max_p99_ratio": 1.5, "min_requests": 100},
    },
}
ENDPOINT = parse_spec(SPEC)
assert ENDPOINT.rollout is not None
ROLLOUT: Rollout = ENDPOINT.rollout
GOOD = RouteWindow(200, 0, 0.010)
BASE = RouteWindow(800, 0, 0.010)


def report(candidate: RouteWindow = GOOD, baseline: RouteWindow = BASE) -> ro.GateReport:
    return evaluate_gates(ROLLOUT.gates, candidate, baseline)


def running(step: int = 0, *, at: float = T0, status: Status = Status.RUNNING) -> RolloutState:
    weight = ROLLOUT.steps[step].weight
    return RolloutState(status, step, weight, at, "", ro.spec_key(ROLLOUT), 7, T0)


# ---- start ---------------------------------------------------------------------------------------
def test_start_runs_the_first_step() -> None:
    d = ro.start(ROLLOUT, 7, T0)
    assert d.state.status is Status.RUNNING
    assert (d.state.step, d.state.weight, d.state.step_started_at) == (0, 20.0, T0)
    assert d.state.candidate_version == 7
    assert d.state.spec_key == ro.spec_key(ROLLOUT)
    assert [e.kind for e in d.events] == ["rollout.started"]
    assert not d.promote


def test_start_when_candidate_already_is_production() -> None:
    d = ro.start(ROLLOUT, 7, T0, already_production=True)
    assert d.state.status is Status.PROMOTED
    assert "already is production" in d.state.reason
    assert not d.promote  # nothing to move


def test_spec_key_changes_with_the_rollout_section() -> None:
    other = ROLLOUT.model_copy(update={"promote_alias": "stable"})
    assert ro.spec_key(other) != ro.spec_key(ROLLOUT)
    assert ro.spec_key(ROLLOUT) == ro.spec_key(parse_spec(SPEC).rollout)  # type: ignore[arg-type]


# ---- tick ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "state", "now", "rep", "status", "step", "weight", "events", "promote"),
    [
        ("holding", running(0), T0 + 30, report(), Status.RUNNING, 0, 20, [], False),
        ("advance", running(0), T0 + 60, report(), Status.RUNNING, 1, 50, ["advanced"], False),
        ("advance 2", running(1), T0 + 61, report(), Status.RUNNING, 2, 80, ["advanced"], False),
        ("last step", running(3), T0 + 60, report(), Status.PROMOTED, 3, 100, ["promoted"], True),
        (
            "waiting for requests",
            running(0),
            T0 + 600,
            report(RouteWindow(10, 0, 0.01)),
            Status.RUNNING,
            0,
            20,
            [],
            False,
        ),
        (
            "errors roll back before the hold",
            running(0),
            T0 + 5,
            report(RouteWindow(200, 10, 0.01)),
            Status.ROLLED_BACK,
            0,
            0,
            ["rolled_back"],
            False,
        ),
        (
            "slow rolls back",
            running(2),
            T0 + 90,
            report(RouteWindow(200, 0, 0.03)),
            Status.ROLLED_BACK,
            2,
            0,
            ["rolled_back"],
            False,
        ),
        (
            "paused holds",
            running(1, status=Status.PAUSED),
            T0 + 600,
            report(),
            Status.PAUSED,
            1,
            50,
            [],
            False,
        ),
        (
            "paused still rolls back",
            running(1, status=Status.PAUSED),
            T0 + 600,
            report(RouteWindow(200, 50, 0.01)),
            Status.ROLLED_BACK,
            1,
            0,
            ["rolled_back"],
            False,
        ),
    ],
)
def test_tick_table(
    case: str,
    state: RolloutState,
    now: float,
    rep: ro.GateReport,
    status: Status,
    step: int,
    weight: float,
    events: list[str],
    promote: bool,
) -> None:
    d = ro.tick(ROLLOUT, state, rep, now)
    assert d.state.status is status, case
    assert (d.state.step, d.state.weight) == (step, weight), case
    assert [e.kind for e in d.events] == [f"rollout.{k}" for k in events], case
    assert d.promote is promote, case


def test_advance_restarts_the_hold_and_keeps_the_baseline() -> None:
    d = ro.tick(ROLLOUT, running(0), report(), T0 + 60)
    assert d.state.step_started_at == T0 + 60
    assert d.state.baseline == BASE


def test_rollback_records_the_reason() -> None:
    d = ro.tick(ROLLOUT, running(0), report(RouteWindow(200, 10, 0.01)), T0 + 5)
    assert "error rate 5.00%" in d.state.reason
    assert "error rate" in d.events[0].message
    assert d.events[0].data["checks"]  # every gate's value, for the event log


def test_waiting_explains_itself_in_the_reason() -> None:
    d = ro.tick(ROLLOUT, running(0), report(RouteWindow(10, 0, 0.01)), T0 + 600)
    assert d.state.reason == "step 1: waiting for min_requests, error_rate, p99_ratio"
    held = ro.tick(ROLLOUT, running(0), report(), T0 + 1)
    assert held.state.reason == "step 1: holding"


@pytest.mark.parametrize("status", [Status.PROMOTED, Status.ROLLED_BACK, Status.ABORTED])
def test_tick_leaves_finished_rollouts_alone(status: Status) -> None:
    state = running(1, status=status)
    d = ro.tick(ROLLOUT, state, report(RouteWindow(200, 200, None)), T0 + 600)
    assert d.state == state
    assert d.events == ()


def test_a_whole_healthy_rollout() -> None:
    d = ro.start(ROLLOUT, 7, T0)
    weights, now = [d.state.weight], T0
    while not d.promote:
        now += 61
        d = ro.tick(ROLLOUT, d.state, report(), now)
        weights.append(d.state.weight)
    assert weights == [20, 50, 80, 100, 100]
    assert d.state.status is Status.PROMOTED


def test_step_out_of_range_is_treated_as_the_last() -> None:
    state = replace(running(3), step=9)
    d = ro.tick(ROLLOUT, state, report(), T0 + 60)
    assert d.promote


# ---- operator commands ---------------------------------------------------------------------------
def test_pause_and_resume() -> None:
    paused = ro.pause(running(1), T0 + 10).state
    assert paused.status is Status.PAUSED and paused.weight == 50
    resumed = ro.resume(ROLLOUT, paused, T0 + 100)
    assert resumed.state.status is Status.RUNNING
    assert resumed.state.step_started_at == T0 + 100  # the step holds again from now
    assert resumed.state.step == 1


@pytest.mark.parametrize("status", [Status.ROLLED_BACK, Status.ABORTED])
def test_resume_restarts_a_stopped_rollout(status: Status) -> None:
    state = replace(running(2), status=status, weight=0.0)
    d = ro.resume(ROLLOUT, state, T0 + 5)
    assert (d.state.status, d.state.step, d.state.weight) == (Status.RUNNING, 0, 20.0)
    assert [e.kind for e in d.events] == ["rollout.resumed"]


def test_abort_takes_traffic_off() -> None:
    d = ro.abort(running(2), T0, "bad canary")
    assert (d.state.status, d.state.weight, d.state.reason) == (Status.ABORTED, 0.0, "bad canary")
    assert not d.promote


def test_promote_now() -> None:
    d = ro.promote(ROLLOUT, running(0), T0)
    assert d.promote and d.state.status is Status.PROMOTED and d.state.weight == 100


@pytest.mark.parametrize(
    ("op", "status"),
    [
        ("pause", Status.PAUSED),
        ("pause", Status.PROMOTED),
        ("resume", Status.RUNNING),
        ("resume", Status.PROMOTED),
        ("abort", Status.ROLLED_BACK),
        ("abort", Status.PROMOTED),
        ("promote", Status.PROMOTED),
    ],
)
def test_operator_commands_refuse_wrong_states(op: str, status: Status) -> None:
    state = running(1, status=status)
    with pytest.raises(FailedPreconditionError, match=status.value):
        if op == "pause":
            ro.pause(state, T0)
        elif op == "resume":
            ro.resume(ROLLOUT, state, T0)
        elif op == "abort":
            ro.abort(state, T0)
        else:
            ro.promote(ROLLOUT, state, T0)


# ---- stored form ---------------------------------------------------------------------------------
def test_state_json_round_trip() -> None:
    state = replace(running(2), reason="x", baseline=RouteWindow(10, 1, 0.5, 0.2))
    assert RolloutState.from_json(state.to_json()) == state
    assert RolloutState.from_json(running(0).to_json()) == running(0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "JSON object"),
        ({"status": "flying", "step": 0, "weight": 1, "step_started_at": 1}, "'status'"),
        ({"status": "running", "step": "0", "weight": 1, "step_started_at": 1}, "'step'"),
        ({"status": "running", "step": 0, "weight": None, "step_started_at": 1}, "'weight'"),
        ({"status": "running", "step": 0, "weight": 1}, "'step_started_at'"),
        (
            {"status": "running", "step": 0, "weight": 1, "step_started_at": 1, "baseline": 3},
            "'baseline'",
        ),
        (
            {
                "status": "running",
                "step": 0,
                "weight": 1,
                "step_started_at": 1,
                "baseline": {"requests": 1.5, "errors": 0},
            },
            "'baseline.requests'",
        ),
    ],
)
def test_malformed_state_names_the_field(data: Any, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        RolloutState.from_json(data)


# ---- effective weights ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, None),
        (running(0), {"a": 60.0, "b": 20.0, CANDIDATE_ROUTE: 20.0}),
        (running(2, status=Status.PAUSED), {"a": 15.0, "b": 5.0, CANDIDATE_ROUTE: 80.0}),
        (running(3), {"a": 0.0, "b": 0.0, CANDIDATE_ROUTE: 100.0}),
        (replace(running(1), status=Status.ROLLED_BACK, weight=0.0), None),
        (replace(running(1), status=Status.PROMOTED), None),
        (replace(running(1), spec_key="stale"), None),  # the spec changed since
    ],
)
def test_effective_weights(state: RolloutState | None, expected: dict[str, float] | None) -> None:
    got = ro.effective_weights(ENDPOINT, state)
    assert got == expected
    if got is not None:
        assert sum(got.values()) == pytest.approx(100.0)


def test_no_weights_without_a_rollout_section() -> None:
    plain = EndpointSpec.model_validate({**SPEC, "rollout": None})
    assert ro.effective_weights(plain, running(0)) is None
