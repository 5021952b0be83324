"""Rollout decisions: pure functions over the spec, the stored state and aggregated window stats.

A rollout moves an endpoint's traffic to ``spec.rollout.candidate`` in steps (e.g. 20 -> 50 -> 80
-> 100 %). Each step holds for ``hold_s`` and advances only when every gate passes against the
production routes in the same window: error-rate delta, p99 ratio, minimum request count and,
optionally, output agreement from a shadow comparison. A failing gate rolls back to 0 % at once.

Nothing here reads a clock, a database or a socket: :mod:`modelyard.control.controller` gathers
the inputs, judges them with :func:`modelyard.traffic.gates.evaluate_gates`, decides with
:func:`tick` and stores the :class:`Decision`.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from modelyard.errors import FailedPreconditionError, InvalidInputError
from modelyard.traffic.gates import GateReport, RouteWindow, Verdict
from modelyard.traffic.spec import EndpointSpec, Rollout

#: Route name of the candidate while a rollout is active (the traffic layer's synthetic route).
CANDIDATE_ROUTE = "candidate"


class Status(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"

    @property
    def active(self) -> bool:
        """The candidate holds traffic (running, or paused at its current weight)."""
        return self in (Status.RUNNING, Status.PAUSED)


# ---- state -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RolloutState:
    """The stored state of one endpoint's rollout (table ``rollouts``, as JSON).

    ``spec_key`` fingerprints the rollout section of the spec and ``candidate_version`` is the
    candidate's version when the rollout started: when either changes, a new rollout starts.
    ``baseline`` is production's window at the last step change, used when production has too
    few requests of its own (the 100 % step)."""

    status: Status
    step: int
    weight: float
    step_started_at: float
    reason: str = ""
    spec_key: str = ""
    candidate_version: int | None = None
    started_at: float = 0.0
    baseline: RouteWindow | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "step": self.step,
            "weight": self.weight,
            "step_started_at": self.step_started_at,
            "reason": self.reason,
            "spec_key": self.spec_key,
            "candidate_version": self.candidate_version,
            "started_at": self.started_at,
            "baseline": None if self.baseline is None else self.baseline.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> RolloutState:
        """Parse stored state; InvalidInputError naming the field when it is malformed."""
        if not isinstance(data, dict):
            raise InvalidInputError("rollout state must be a JSON object")
        try:
            status = Status(str(data.get("status")))
        except ValueError as exc:
            raise InvalidInputError(
                f"rollout state: 'status' must be one of {[s.value for s in Status]}, "
                f"got {data.get('status')!r}"
            ) from exc
        version = data.get("candidate_version")
        baseline = data.get("baseline")
        return cls(
            status=status,
            step=_int(data, "step", "step"),
            weight=_float(data, "weight", "weight"),
            step_started_at=_float(data, "step_started_at", "step_started_at"),
            reason=str(data.get("reason", "")),
            spec_key=str(data.get("spec_key", "")),
            candidate_version=None
            if version is None
            else _int(data, "candidate_version", "candidate_version"),
            started_at=_float(data, "started_at", "started_at", default=0.0),
            baseline=None if baseline is None else _window(baseline),
        )


def _int(data: dict[str, Any], key: str, label: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"rollout state: '{label}' must be an integer, got {value!r}")
    return value


def _float(data: dict[str, Any], key: str, label: str, default: float | None = None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"rollout state: '{label}' must be a number, got {value!r}")
    return float(value)


def _window(data: Any) -> RouteWindow:
    if not isinstance(data, dict):
        raise InvalidInputError("rollout state: 'baseline' must be an object")
    p99, p50 = data.get("p99_s"), data.get("p50_s")
    return RouteWindow(
        requests=_int(data, "requests", "baseline.requests"),
        errors=_int(data, "errors", "baseline.errors"),
        p99_s=None if p99 is None else _float(data, "p99_s", "baseline.p99_s"),
        p50_s=None if p50 is None else _float(data, "p50_s", "baseline.p50_s"),
    )


def spec_key(rollout: Rollout) -> str:
    """A short fingerprint of a rollout section: a new one means a new rollout."""
    return hashlib.sha256(rollout.model_dump_json().encode()).hexdigest()[:16]


# ---- transitions -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    """An entry for the event log (table ``events``): ``kind`` is ``rollout.<what>``."""

    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """The next state, the events to log, and whether to move the promote alias first."""

    state: RolloutState
    events: tuple[Event, ...] = ()
    promote: bool = False


def start(
    rollout: Rollout, candidate_version: int, now: float, *, already_production: bool = False
) -> Decision:
    """A new rollout at its first step (or promoted at once when the candidate already is the
    promote alias's version: there is nothing to roll out)."""
    key = spec_key(rollout)
    label = f"{rollout.candidate.model} version {candidate_version}"
    if already_production:
        state = RolloutState(
            Status.PROMOTED,
            len(rollout.steps) - 1,
            100.0,
            now,
            f"{label} already is {rollout.promote_alias}",
            key,
            candidate_version,
            now,
        )
        return Decision(state, (Event("rollout.promoted", state.reason, _data(state)),))
    first = rollout.steps[0]
    state = RolloutState(Status.RUNNING, 0, first.weight, now, "", key, candidate_version, now)
    message = f"rollout of {label} started at {first.weight:g} %"
    return Decision(state, (Event("rollout.started", message, _data(state)),))


def tick(rollout: Rollout, state: RolloutState, report: GateReport, now: float) -> Decision:
    """One controller evaluation of an active rollout.

    A failing gate rolls back at once (also while paused). Otherwise, once the step has held
    for its ``hold_s`` and every gate passes, the rollout moves to the next step, or, after the
    last one, is promoted. Waiting only updates the reason (which gates it waits for).
    """
    if not state.status.active:
        return Decision(state)
    checks = [c.to_json() for c in report.checks]

    def event(kind: str, new: RolloutState, message: str) -> Event:
        data = {**_data(new), "previous_weight": state.weight, "checks": checks}
        return Event(kind, message, data)

    if report.verdict is Verdict.FAIL:
        reason = report.reason
        new = replace(state, status=Status.ROLLED_BACK, weight=0.0, reason=reason)
        message = f"rolled back at step {state.step + 1} ({state.weight:g} %): {reason}"
        return Decision(new, (event("rollout.rolled_back", new, message),))
    if state.status is Status.PAUSED:
        return Decision(state)
    step = min(state.step, len(rollout.steps) - 1)
    held = step_held(rollout, state, now)
    if report.verdict is Verdict.WAIT or not held:
        # Names only, not counts: the stored state changes when the situation does, not on
        # every round (``rollout status`` shows the live numbers).
        waiting = [c.name for c in report.checks if c.verdict is Verdict.WAIT]
        why = f"waiting for {', '.join(waiting)}" if report.verdict is Verdict.WAIT else "holding"
        return Decision(replace(state, reason=f"step {step + 1}: {why}"))
    baseline = report.baseline if report.baseline.requests else state.baseline
    if step + 1 >= len(rollout.steps):
        new = replace(state, status=Status.PROMOTED, weight=100.0, reason="", baseline=baseline)
        message = (
            f"promoted: {rollout.promote_alias} -> {rollout.candidate.model} "
            f"version {state.candidate_version}"
        )
        return Decision(new, (event("rollout.promoted", new, message),), promote=True)
    nxt = rollout.steps[step + 1]
    new = replace(
        state, step=step + 1, weight=nxt.weight, step_started_at=now, reason="", baseline=baseline
    )
    message = f"step {step + 2}: {state.weight:g} % -> {nxt.weight:g} % (gates passed)"
    return Decision(new, (event("rollout.advanced", new, message),))


def step_held(rollout: Rollout, state: RolloutState, now: float) -> bool:
    """Whether the current step has held for its ``hold_s`` (its window is complete)."""
    step = min(state.step, len(rollout.steps) - 1)
    return now - state.step_started_at >= rollout.steps[step].hold_s


def pause(state: RolloutState, now: float) -> Decision:
    """Stop advancing; the candidate keeps its weight and failing gates still roll back."""
    if state.status is not Status.RUNNING:
        raise FailedPreconditionError(f"rollout is {state.status.value}, not running")
    new = replace(state, status=Status.PAUSED, reason="paused by an operator")
    message = f"paused at step {state.step + 1} ({state.weight:g} %)"
    return Decision(new, (Event("rollout.paused", message, _data(new)),))


def resume(rollout: Rollout, state: RolloutState, now: float) -> Decision:
    """Continue a paused rollout (its step holds again from now), or restart a rolled back or
    aborted one from its first step."""
    if state.status is Status.PAUSED:
        new = replace(state, status=Status.RUNNING, step_started_at=now, reason="")
        message = f"resumed at step {state.step + 1} ({state.weight:g} %)"
    elif state.status in (Status.ROLLED_BACK, Status.ABORTED):
        first = rollout.steps[0]
        new = replace(
            state,
            status=Status.RUNNING,
            step=0,
            weight=first.weight,
            step_started_at=now,
            reason="",
            started_at=now,
        )
        message = f"restarted at step 1 ({first.weight:g} %)"
    else:
        raise FailedPreconditionError(
            f"rollout is {state.status.value}; only a paused, rolled back or aborted rollout "
            "can be resumed"
        )
    return Decision(new, (Event("rollout.resumed", message, _data(new)),))


def abort(state: RolloutState, now: float, reason: str = "aborted by an operator") -> Decision:
    """Take all traffic off the candidate now; the promote alias is not touched."""
    if not state.status.active:
        raise FailedPreconditionError(f"rollout is {state.status.value}, nothing to abort")
    new = replace(state, status=Status.ABORTED, weight=0.0, reason=reason)
    message = f"aborted at step {state.step + 1} ({state.weight:g} %): {reason}"
    return Decision(new, (Event("rollout.aborted", message, _data(new)),))


def promote(rollout: Rollout, state: RolloutState, now: float) -> Decision:
    """Promote now, skipping the remaining steps and gates (an operator's decision)."""
    if state.status is Status.PROMOTED:
        raise FailedPreconditionError("rollout is already promoted")
    new = replace(state, status=Status.PROMOTED, weight=100.0, reason="promoted by an operator")
    message = (
        f"promoted by an operator: {rollout.promote_alias} -> {rollout.candidate.model} "
        f"version {state.candidate_version}"
    )
    return Decision(new, (Event("rollout.promoted", message, _data(new)),), promote=True)


def _data(state: RolloutState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "step": state.step,
        "weight": state.weight,
        "candidate_version": state.candidate_version,
    }


# ---- weights ---------------------------------------------------------------------------------
def effective_weights(spec: EndpointSpec, state: RolloutState | None) -> dict[str, float] | None:
    """Route weights while a rollout is active: the candidate gets ``state.weight`` percent, the
    spec's routes share the rest in their own proportions. None: use the spec's weights."""
    if (
        spec.rollout is None
        or state is None
        or not state.status.active
        or state.spec_key != spec_key(spec.rollout)
    ):
        return None
    share = (100.0 - state.weight) / 100.0
    weights = {route.name: route.weight * share for route in spec.routes}
    weights[CANDIDATE_ROUTE] = state.weight
    return weights
