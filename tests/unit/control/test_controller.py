"""The controller over a real (SQLite) registry, with a fake clock and stats rows written
directly: starts, advances, promotes, rolls back, stands by without the lease, never
overwrites an operator's decision."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.control import lease
from modelyard.control.controller import Controller, WindowReport, evaluate_window, operate
from modelyard.control.rollout_view import RegistryRolloutView
from modelyard.control.store import list_events, load_rollout
from modelyard.errors import FailedPreconditionError, InvalidInputError, NotFoundError
from modelyard.traffic import rollout as policy
from modelyard.traffic.gates import Verdict
from modelyard.traffic.rollout import CANDIDATE_ROUTE, Status
from modelyard.traffic.stats import SHADOW_ROUTE, RouteStats, StatsRow
from modelyard.traffic.stats_store import write_rows
from tests.unit.control.conftest import HOLD, INTERVAL, WALL0, Env, Read, spec


def test_first_round_starts_the_rollout(env: Env) -> None:
    (decision,) = env.controller.round()
    state = env.state()
    assert (state.status, state.step, state.weight) == (Status.RUNNING, 0, 20.0)
    assert state.candidate_version == 2
    assert env.kinds() == ["rollout.started"]
    assert decision.state == state
    (waiting,) = env.controller.round()  # no stats yet: the reason says what it waits for
    assert waiting.events == () and "waiting for min_requests" in env.state().reason
    assert env.controller.round() == []  # nothing changed: nothing written


def test_healthy_candidate_is_promoted_step_by_step(env: Env) -> None:
    env.controller.round()
    weights = [env.state().weight]
    for _ in range(4):
        env.clock.advance(HOLD)
        env.healthy_interval()
        env.controller.round()
        weights.append(env.state().weight)
    assert weights == [20, 50, 80, 100, 100]
    assert env.state().status is Status.PROMOTED
    assert env.registry.aliases("fraud")["production"] == 2
    assert env.kinds() == ["rollout.started"] + ["rollout.advanced"] * 3 + ["rollout.promoted"]


def test_a_step_does_not_advance_before_its_hold(env: Env) -> None:
    env.controller.round()
    env.clock.advance(HOLD / 2)
    env.healthy_interval()
    env.controller.round()
    assert (env.state().step, env.state().reason) == (0, "step 1: holding")


def test_erroring_candidate_rolls_back_at_once_with_the_reason(env: Env) -> None:
    env.controller.round()
    env.clock.advance(1)  # well inside the hold: failures do not wait for it
    env.healthy_interval(errors=10)  # 5 %
    assert env.controller.round()
    state = env.state()
    assert (state.status, state.weight) == (Status.ROLLED_BACK, 0.0)
    assert "error rate 5.00%" in state.reason
    events = list_events(env.registry, "fraud-ep")
    assert events[-1].kind == "rollout.rolled_back"
    assert "error rate" in events[-1].message
    assert env.registry.aliases("fraud")["production"] == 1
    assert env.controller.round() == []  # stays rolled back


def test_slow_candidate_rolls_back(env: Env) -> None:
    env.controller.round()
    env.clock.advance(HOLD)
    env.healthy_interval()
    env.controller.round()  # step 2
    env.clock.advance(1)
    env.healthy_interval(latency_s=0.030)
    env.controller.round()
    state = env.state()
    assert (state.status, state.step) == (Status.ROLLED_BACK, 1)
    assert "p99" in state.reason and "ratio 2.8" in state.reason


def test_stats_of_other_routes_versions_and_earlier_steps_are_ignored(env: Env) -> None:
    env.controller.round()
    # Before this step began: not in its window.
    env.stats(CANDIDATE_ROUTE, 2, requests=200, errors=200, at=WALL0 - 2 * INTERVAL)
    env.clock.advance(HOLD)
    # Fallback answers for the candidate's failures carry route "fallback": not the candidate.
    env.stats("fallback", 1, requests=50, errors=50)
    # Another version on the candidate route (e.g. the alias moved; not the one judged).
    env.stats(CANDIDATE_ROUTE, 3, requests=50, errors=50)
    env.stats(SHADOW_ROUTE, 2, requests=500, errors=500)
    env.healthy_interval()
    env.controller.round()
    assert (env.state().status, env.state().step) == (Status.RUNNING, 1)


def test_replicas_are_merged(env: Env) -> None:
    env.controller.round()
    env.clock.advance(HOLD)
    # 60 + 60 candidate requests: only together above min_requests (100).
    env.stats(CANDIDATE_ROUTE, 2, requests=60, replica="r1")
    env.stats(CANDIDATE_ROUTE, 2, requests=60, replica="r2")
    env.stats("stable", 1, requests=400)
    spec = env.endpoints.get("fraud-ep").spec
    report = evaluate_window(env.registry, spec, env.state(), 10, env.clock.wall())
    assert report.report.candidate.requests == 120
    assert report.report.verdict is Verdict.PASS


def test_full_step_uses_the_last_production_baseline(env: Env) -> None:
    env.controller.round()
    for _ in range(3):
        env.clock.advance(HOLD)
        env.healthy_interval()
        env.controller.round()
    assert env.state().weight == 100
    assert env.state().baseline is not None
    env.clock.advance(HOLD)
    env.stats(CANDIDATE_ROUTE, 2, requests=500)  # production gets nothing at 100 %
    env.controller.round()
    assert env.state().status is Status.PROMOTED


def test_a_stall_early_in_a_step_is_judged_over_the_whole_step(env: Env) -> None:
    env.controller.round()
    env.clock.advance(1)
    # The first 100 candidate requests hold 3 stalls: the window's p99 is the stall (ratio 20).
    env.stats(CANDIDATE_ROUTE, 2, requests=100, stalls=3)
    env.stats("stable", 1, requests=400)
    env.controller.round()
    state = env.state()
    assert state.status is Status.RUNNING, state.reason
    assert "p99_ratio" in state.reason  # waits for the step to hold before judging the p99
    env.clock.advance(HOLD)
    env.healthy_interval(requests=400)  # over the whole step, 3 stalls in 500 are < 1 %
    env.controller.round()
    assert (env.state().status, env.state().step) == (Status.RUNNING, 1)


def test_a_step_whose_p99_stays_over_the_limit_rolls_back_when_it_has_held(env: Env) -> None:
    env.controller.round()
    env.clock.advance(1)
    env.stats(CANDIDATE_ROUTE, 2, requests=100, stalls=3)
    env.stats("stable", 1, requests=400)
    env.controller.round()
    env.clock.advance(HOLD)
    env.healthy_interval(requests=100, stalls=3)  # still 3 % stalls
    env.controller.round()
    state = env.state()
    assert (state.status, state.step) == (Status.ROLLED_BACK, 0)
    assert "p99 latency 202.1 ms vs production 10.6 ms (ratio 19.03" in state.reason


def to_full_step(env: Env, production_stalls: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Start the rollout and pass its 20, 50 and 80 % steps (200 candidate and 400 production
    requests each, ``production_stalls`` of those stalled), each interval inside its step."""
    env.controller.round()
    for stalls in production_stalls:
        at = env.clock.wall() + INTERVAL + 1  # inside this step's window only
        env.stats(CANDIDATE_ROUTE, 2, requests=200, at=at)
        env.stats("stable", 1, requests=400, stalls=stalls, at=at)
        env.clock.advance(HOLD)
        env.controller.round()
    assert env.state().weight == 100


def full_step(env: Env, **candidate: Any) -> Any:
    """The 100 % step: only candidate requests, then a round once it has held."""
    env.stats(CANDIDATE_ROUTE, 2, at=env.clock.wall() + INTERVAL + 1, **candidate)
    env.clock.advance(HOLD)
    env.controller.round()
    return env.state()


def test_the_full_step_judges_against_production_over_the_whole_rollout(env: Env) -> None:
    # Production stalls at the 50 % step: over the rollout 20 of 1,200 (1.7 %), so its p99 is
    # the stall, while the 80 % step alone (the window stored at the last change) has none.
    to_full_step(env, production_stalls=(0, 20, 0))
    stored = env.state().baseline
    assert stored is not None and stored.p99_s is not None and stored.p99_s < 0.02
    # The candidate stalls like production did: 12 of its 1,100 requests since the start.
    state = full_step(env, requests=500, stalls=12)
    assert state.status is Status.PROMOTED, state.reason


def test_a_stall_at_the_full_step_is_judged_with_the_candidates_earlier_steps(env: Env) -> None:
    to_full_step(env)
    # 6 stalls in the 100 % step's 500 requests (1.2 %) are 0.55 % of the candidate's 1,100
    # since the rollout began, the stretch production's p99 is taken over.
    state = full_step(env, requests=500, stalls=6)
    assert state.status is Status.PROMOTED, state.reason


def test_a_candidate_slow_at_full_traffic_rolls_back_at_the_full_step(env: Env) -> None:
    to_full_step(env)
    state = full_step(env, requests=500, latency_s=0.030)  # 3x production, every request
    assert (state.status, state.step) == (Status.ROLLED_BACK, 3)
    assert "since the rollout began (ratio 2.83" in state.reason


@pytest.mark.parametrize("code", ["FAILED_PRECONDITION", "INVALID_ARGUMENT", "NOT_FOUND"])
def test_a_candidate_that_rejects_what_production_answers_rolls_back(env: Env, code: str) -> None:
    # E.g. a model class the servers cannot import, or a changed signature: every candidate
    # request fails with a client-side code while production answers the same traffic.
    env.controller.round()
    env.stats(CANDIDATE_ROUTE, 2, requests=60, errors=60, code=code)
    env.stats("stable", 1, requests=240)
    env.controller.round()
    state = env.state()
    assert state.status is Status.ROLLED_BACK, state.reason
    assert "(60 errors in the first 60) vs production 0.00%" in state.reason


def test_bad_input_on_both_sides_moves_no_verdict(env: Env) -> None:
    env.controller.round()
    env.stats(CANDIDATE_ROUTE, 2, requests=200, errors=10, code="INVALID_ARGUMENT")
    env.stats("stable", 1, requests=800, errors=40, code="INVALID_ARGUMENT")
    env.clock.advance(HOLD)
    env.controller.round()
    assert (env.state().status, env.state().step) == (Status.RUNNING, 1), env.state().reason


def test_a_round_reads_each_row_once(
    env: Env, stats_reads: list[Read], judged: list[WindowReport]
) -> None:
    # Three judged rounds where production has enough requests of its own: the step's window
    # only, one read each.
    to_full_step(env)
    assert [until for _, until in stats_reads] == [None] * 3
    # The full step: production since the rollout began is the baseline: the rows before the
    # window are read too, up to where the window's read began.
    del stats_reads[:]
    state = full_step(env, requests=500, stalls=6)
    assert state.status is Status.PROMOTED, state.reason
    window = judged[-1]
    assert window.since == state.step_started_at - INTERVAL > WALL0
    assert stats_reads == [(window.since, None), (WALL0 - INTERVAL, window.since)]
    # The candidate's requests of the window only; production's since the rollout began.
    assert (window.report.candidate.requests, window.report.baseline.requests) == (500, 1200)


def test_production_short_in_a_middle_step_is_judged_on_its_history(
    env: Env, stats_reads: list[Read], judged: list[WindowReport]
) -> None:
    env.controller.round()
    for production in (400, 50):  # the 50 % step gets too few production requests (< 100)
        # The step's last interval: it starts where the next step's window begins (after).
        at = env.clock.wall() + HOLD - INTERVAL
        env.stats(CANDIDATE_ROUTE, 2, requests=200, at=at)
        env.stats("stable", 1, requests=production, at=at)
        env.clock.advance(HOLD)
        env.controller.round()
    assert (env.state().status, env.state().step) == (Status.RUNNING, 2), env.state().reason
    since = WALL0 + HOLD - INTERVAL  # the 50 % step's window: from the first step's last one
    assert stats_reads[-2:] == [(since, None), (WALL0 - INTERVAL, since)]
    report = judged[-1].report
    assert (report.candidate.requests, report.baseline.requests) == (200, 450)
    assert report.verdict is Verdict.PASS


def test_agreement_gate_uses_the_candidates_shadow(env: Env) -> None:
    env.endpoints.apply(spec(gates={"min_requests": 100, "min_agreement": 0.95}))
    env.controller.round()
    env.clock.advance(HOLD)
    env.healthy_interval()
    env.controller.round()
    assert env.state().step == 0 and "waiting for agreement" in env.state().reason
    shadow = RouteStats()
    shadow.shadow_stats().compared, shadow.shadow_stats().agreed = 200, 150
    start = env.clock.wall() // INTERVAL * INTERVAL
    write_rows(
        env.registry, [StatsRow("r1", start, "fraud-ep", SHADOW_ROUTE, "fraud", 2, shadow)], 10
    )
    env.controller.round()
    assert env.state().status is Status.ROLLED_BACK
    assert "agreement 75.0%" in env.state().reason


def test_a_new_candidate_version_restarts_the_rollout(env: Env) -> None:
    env.controller.round()
    env.clock.advance(1)
    env.healthy_interval(errors=50)
    env.controller.round()
    assert env.state().status is Status.ROLLED_BACK
    env.registry.set_alias("fraud", "candidate", 3)
    env.controller.round()
    state = env.state()
    assert (state.status, state.step, state.candidate_version) == (Status.RUNNING, 0, 3)


def test_spec_changes(env: Env) -> None:
    env.controller.round()
    env.clock.advance(HOLD)
    env.healthy_interval()
    env.controller.round()
    assert env.state().step == 1
    # A change outside the rollout section keeps the rollout where it is ...
    env.endpoints.apply({**spec(), "timeout_ms": 100})
    env.controller.round()
    assert env.state().step == 1
    # ... a new rollout section starts over.
    env.endpoints.apply(spec(steps=[{"weight": 10, "hold_s": 5}, {"weight": 100, "hold_s": 5}]))
    env.controller.round()
    assert (env.state().step, env.state().weight) == (0, 10)


def test_a_deleted_endpoint_takes_its_rollout_state_but_not_its_events(env: Env) -> None:
    env.controller.round()
    env.clock.advance(HOLD)
    env.healthy_interval()
    env.controller.round()
    assert env.state().step == 1
    env.endpoints.delete("fraud-ep")
    assert load_rollout(env.registry, "fraud-ep") is None
    assert env.kinds() == ["rollout.started", "rollout.advanced"]  # the audit trail stays
    # The same spec applied again is a new endpoint: its rollout starts over, from now.
    env.clock.advance(HOLD)
    env.endpoints.apply(spec())
    env.controller.round()
    state = env.state()
    assert (state.status, state.step, state.weight) == (Status.RUNNING, 0, 20.0)
    assert state.started_at == state.step_started_at == env.clock.wall()
    assert env.kinds() == ["rollout.started", "rollout.advanced", "rollout.started"]


def test_candidate_already_production(env: Env) -> None:
    env.registry.set_alias("fraud", "candidate", 1)
    env.controller.round()
    assert env.state().status is Status.PROMOTED
    assert env.kinds() == ["rollout.promoted"]


def test_missing_candidate_is_logged_not_fatal(env: Env) -> None:
    env.registry.delete_alias("fraud", "candidate")
    assert env.controller.round() == []
    assert load_rollout(env.registry, "fraud-ep") is None


def test_only_the_lease_holder_acts(env: Env) -> None:
    standby = Controller(env.registry, holder="c2", interval_s=1, stats_interval_s=INTERVAL)
    assert env.controller.round()
    assert env.controller.leader
    assert standby.round() == [] and not standby.leader
    assert lease.holder_of(env.registry, lease.CONTROLLER_LEASE) == "c1"
    # The leader dies (stops renewing): the standby takes over once the lease expires.
    env.clock.advance(env.controller.lease_ttl_s + 1)
    env.healthy_interval()
    standby.round()
    assert standby.leader
    # A clean shutdown hands over at once.
    standby.release()
    assert lease.holder_of(env.registry, lease.CONTROLLER_LEASE) is None


def test_a_decision_never_overwrites_an_operators(env: Env) -> None:
    env.controller.round()
    stale = load_rollout(env.registry, "fraud-ep")
    operate(env.registry, "fraud-ep", "pause")
    env.clock.advance(1)
    endpoint = env.endpoints.get("fraud-ep").spec
    assert stale is not None and endpoint.rollout is not None
    decision = policy.abort(stale.state, env.clock.wall(), "late")
    assert env.controller.apply(endpoint, stale, decision) is None
    assert env.state().status is Status.PAUSED


# ---- operator commands ---------------------------------------------------------------------------
def test_operate(env: Env) -> None:
    with pytest.raises(FailedPreconditionError, match="not started"):
        operate(env.registry, "fraud-ep", "pause")
    env.controller.round()
    assert operate(env.registry, "fraud-ep", "pause").state.status is Status.PAUSED
    env.clock.advance(HOLD)
    env.healthy_interval()
    env.controller.round()
    assert env.state().step == 0  # paused: no advance
    assert operate(env.registry, "fraud-ep", "resume").state.status is Status.RUNNING
    d = operate(env.registry, "fraud-ep", "abort", "bad idea")
    assert (d.state.status, d.state.reason) == (Status.ABORTED, "bad idea")
    operate(env.registry, "fraud-ep", "resume")
    env.clock.advance(1)  # events are listed by time
    d = operate(env.registry, "fraud-ep", "promote")
    assert d.state.status is Status.PROMOTED
    assert env.registry.aliases("fraud")["production"] == 2
    assert env.kinds()[-1] == "rollout.promoted"
    with pytest.raises(FailedPreconditionError, match="already promoted"):
        operate(env.registry, "fraud-ep", "promote")


def test_operate_errors(env: Env) -> None:
    with pytest.raises(InvalidInputError, match="action"):
        operate(env.registry, "fraud-ep", "explode")
    with pytest.raises(NotFoundError, match="nope"):
        operate(env.registry, "nope", "pause")
    env.endpoints.apply({**spec(), "rollout": None})
    with pytest.raises(FailedPreconditionError, match="no rollout"):
        operate(env.registry, "fraud-ep", "pause")


# ---- the view ------------------------------------------------------------------------------------
def test_view_follows_the_stored_state(env: Env) -> None:
    view = RegistryRolloutView(env.registry, refresh_s=1)
    view.refresh()
    assert view.weights("fraud-ep") is None
    env.controller.round()
    view.refresh()
    assert view.weights("fraud-ep") == {"stable": 80.0, CANDIDATE_ROUTE: 20.0}
    state = view.state("fraud-ep")
    assert state is not None and state.status is Status.RUNNING
    env.clock.advance(1)
    env.healthy_interval(errors=100)
    env.controller.round()
    view.refresh()
    assert view.weights("fraud-ep") is None  # rolled back: the spec's routes only
    assert view.weights("unknown") is None
