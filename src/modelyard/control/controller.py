"""The controller: moves rollouts forward or back from the stats every replica writes.

Exactly one controller acts per registry: every round starts by taking (or renewing) the
``controller`` lease (:mod:`modelyard.control.lease`); a process that does not get it stands by
and tries again next round, so a standby takes over within one lease TTL when the leader dies.

A round, for each endpoint whose spec has a ``rollout``:

1. resolve the candidate's version; start a new rollout when there is no state yet, or the
   rollout section of the spec or the candidate's version changed since the state was written;
2. otherwise, while it is active, merge the serving stats of every replica for the current
   step's window: the candidate route (its version), the spec's routes (production) and the
   candidate's shadow comparisons; judge them with :func:`~modelyard.traffic.gates.evaluate_gates`
   and decide with :func:`~modelyard.traffic.rollout.tick`;
3. on promotion, move ``promote_alias`` to the candidate's version first, then store the state
   and its events (compare-and-set: an operator's command in between wins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from modelyard.control import lease
from modelyard.control.store import (
    StoredRollout,
    load_endpoint,
    load_endpoints,
    load_rollout,
    save_rollout,
)
from modelyard.errors import (
    FailedPreconditionError,
    InvalidInputError,
    ModelYardError,
    NotFoundError,
)
from modelyard.registry.registry import Registry
from modelyard.traffic import rollout as policy
from modelyard.traffic.gates import (
    Agreement,
    GateReport,
    RouteWindow,
    choose_baseline,
    evaluate_gates,
)
from modelyard.traffic.rollout import CANDIDATE_ROUTE, Decision, RolloutState
from modelyard.traffic.spec import EndpointSpec, Rollout
from modelyard.traffic.stats import SHADOW_ROUTE, RouteStats, StatsRow, merge_rows
from modelyard.traffic.stats_store import prune_rows, read_rows

log = logging.getLogger("modelyard.controller")

#: How long serving stats are kept; the controller deletes older rows now and then.
STATS_RETENTION_S = 7 * 24 * 3600.0
_PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class WindowReport:
    """The gates' inputs and verdict for an endpoint's current step (``rollout status``)."""

    endpoint: str
    state: RolloutState
    report: GateReport
    since: float


def candidate_version(registry: Registry, rollout: Rollout) -> int:
    ref = rollout.candidate.version
    return registry.resolve(rollout.candidate.model, None if ref is None else str(ref)).version


def route_window(stats: RouteStats) -> RouteWindow:
    latency = stats.latency
    return RouteWindow(
        stats.requests, stats.failures(), latency.quantile(0.99), latency.quantile(0.5)
    )


def evaluate_window(
    registry: Registry, spec: EndpointSpec, state: RolloutState, interval_s: float, now: float
) -> WindowReport:
    """Merge every replica's stats since the current step began (intervals overlapping it)
    and judge them against the spec's gates at ``now``. When production has too few requests
    in the step (the 100 % step), its stats since the rollout began are the baseline: the rows
    before the step's window are read then, and only then (no row is read twice)."""
    rollout = spec.rollout
    assert rollout is not None
    since = state.step_started_at - interval_s
    rows = read_rows(registry, spec.name, since)
    history = None
    if (
        state.started_at < state.step_started_at
        and production_requests(spec, rows) < rollout.gates.min_requests
    ):
        earlier = read_rows(registry, spec.name, state.started_at - interval_s, until=since)
        history = earlier + rows
    report = judge(spec, state, rows, now=now, history=history)
    return WindowReport(spec.name, state, report, since)


def production_requests(spec: EndpointSpec, rows: Iterable[StatsRow]) -> int:
    """Requests the spec's own routes (production) answered or failed in ``rows``."""
    return sum(r.stats.requests for r in production_rows(spec, rows))


def production_stats(spec: EndpointSpec, rows: Iterable[StatsRow]) -> RouteStats:
    """The spec's own routes (production), merged."""
    return merge_rows(production_rows(spec, rows))


def production_rows(spec: EndpointSpec, rows: Iterable[StatsRow]) -> Iterator[StatsRow]:
    """The rows of the spec's own routes (production), whose model resolved."""
    routes = {route.name for route in spec.routes}
    return (r for r in rows if r.route in routes and r.model)


def judge(
    spec: EndpointSpec,
    state: RolloutState,
    rows: list[StatsRow],
    *,
    now: float,
    history: list[StatsRow] | None = None,
) -> GateReport:
    """Pure: the gate report at ``now`` for ``rows`` (every replica, the step's window);
    ``history``: rows since the rollout began (the window's included), merged only when
    production has too few requests in the window, for a baseline (else the baseline stored
    at the last step change)."""
    rollout = spec.rollout
    assert rollout is not None
    candidate = candidate_stats(spec, state, rows)
    cand_model, cand_version = rollout.candidate.model, state.candidate_version
    shadow = merge_rows(
        r
        for r in rows
        if r.route == SHADOW_ROUTE and r.model == cand_model and r.version == cand_version
    ).shadow
    agreement = None if shadow is None else Agreement(shadow.compared, shadow.agreed)
    window = route_window(production_stats(spec, rows))
    since_start = None
    if history is not None and window.requests < rollout.gates.min_requests:
        since_start = route_window(production_stats(spec, history))
    baseline = choose_baseline(
        window, state.baseline, rollout.gates.min_requests, history=since_start
    )
    latency = None
    if history is not None and baseline is since_start:
        # Production since the rollout began: compare the candidate's p99 over that same
        # stretch (its earlier steps ran beside production), not one step against another.
        latency = route_window(candidate_stats(spec, state, history))
    held = policy.step_held(rollout, state, now)
    return evaluate_gates(
        rollout.gates,
        route_window(candidate),
        baseline,
        agreement,
        held=held,
        candidate_latency=latency,
    )


def candidate_stats(
    spec: EndpointSpec, state: RolloutState, rows: Iterable[StatsRow]
) -> RouteStats:
    """The candidate route's rows of the candidate's version, merged."""
    assert spec.rollout is not None
    model, version = spec.rollout.candidate.model, state.candidate_version
    # Version 0: the candidate failed before its version was known (e.g. it would not resolve).
    return merge_rows(
        r
        for r in rows
        if r.route == CANDIDATE_ROUTE and r.model == model and r.version in (version, 0)
    )


class Controller:
    """One process's controller; :meth:`run` is its background task, :meth:`round` one pass."""

    def __init__(
        self,
        registry: Registry,
        *,
        holder: str,
        interval_s: float,
        stats_interval_s: float,
        lease_ttl_s: float | None = None,
        on_change: Callable[[], None] | None = None,
        passes: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.registry = registry
        self.holder = holder
        self.interval_s = interval_s
        self.stats_interval_s = stats_interval_s
        self.lease_ttl_s = lease_ttl_s if lease_ttl_s is not None else max(3 * interval_s, 5.0)
        self.on_change = on_change
        #: More work done by the leader in every round, after the rollouts (e.g. MLflow
        #: follows); a pass that fails is logged and does not stop the others.
        self.passes = tuple(passes)
        self.leader = False
        self._last_prune = float("-inf")

    def round(self) -> list[Decision]:
        """Take the lease, then evaluate every endpoint with a rollout. Returns the decisions
        that were stored (empty when another process is the controller)."""
        held = lease.try_acquire(
            self.registry, lease.CONTROLLER_LEASE, self.holder, self.lease_ttl_s
        )
        if held != self.leader:
            log.info("controller %s: %s", self.holder, "active" if held else "standing by")
        self.leader = held
        if not held:
            return []
        decisions: list[Decision] = []
        for spec in load_endpoints(self.registry):
            if spec.rollout is None:
                continue
            try:
                decision = self.evaluate(spec)
            except ModelYardError as exc:
                log.warning("rollout of endpoint %s: %s", spec.name, exc.message)
                continue
            if decision is not None:
                decisions.append(decision)
        if decisions and self.on_change is not None:
            self.on_change()
        for extra in self.passes:
            try:
                extra()
            except Exception as exc:
                log.warning(
                    "controller pass %s failed: %s", getattr(extra, "__qualname__", extra), exc
                )
        self._prune()
        return decisions

    def evaluate(self, spec: EndpointSpec) -> Decision | None:
        """One endpoint: start, judge or leave its rollout; the stored decision, if any."""
        rollout = spec.rollout
        assert rollout is not None
        now = self.registry.clock.wall()
        stored = load_rollout(self.registry, spec.name)
        try:
            version = candidate_version(self.registry, rollout)
        except NotFoundError as exc:
            log.warning("endpoint %s: rollout candidate not found: %s", spec.name, exc.message)
            return None
        state = None if stored is None else stored.state
        if (
            state is None
            or state.spec_key != policy.spec_key(rollout)
            or state.candidate_version != version
        ):
            production = self._alias_version(rollout)
            decision = policy.start(rollout, version, now, already_production=production == version)
        elif state.status.active:
            window = evaluate_window(self.registry, spec, state, self.stats_interval_s, now)
            decision = policy.tick(rollout, state, window.report, now)
            if decision.state == state:
                return None
        else:
            return None
        return self.apply(spec, stored, decision)

    def apply(
        self, spec: EndpointSpec, stored: StoredRollout | None, decision: Decision
    ) -> Decision | None:
        """Move the alias (on promotion), then store state and events; None if another writer
        changed the state in between."""
        return apply_decision(self.registry, spec, stored, decision)

    def _alias_version(self, rollout: Rollout) -> int | None:
        try:
            return self.registry.aliases(rollout.candidate.model).get(rollout.promote_alias)
        except NotFoundError:
            return None

    def _prune(self) -> None:
        now = self.registry.clock.wall()
        if now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        removed = prune_rows(self.registry, now - STATS_RETENTION_S)
        if removed:
            log.info("deleted %d serving stats rows older than %.0f s", removed, STATS_RETENTION_S)

    def release(self) -> None:
        """Give the lease up (at shutdown) so a standby takes over at once."""
        if self.leader:
            self.leader = False
            try:
                lease.release(self.registry, lease.CONTROLLER_LEASE, self.holder)
            except Exception as exc:
                log.warning("releasing the controller lease failed (it expires): %s", exc)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.round)
            except Exception as exc:
                log.warning("controller round failed: %s", exc)
            await asyncio.sleep(self.interval_s)


def apply_decision(
    registry: Registry, spec: EndpointSpec, stored: StoredRollout | None, decision: Decision
) -> Decision | None:
    """Store a decision (controller or operator): on promotion the alias moves first, so a
    stored ``promoted`` always means the alias points at the candidate."""
    rollout = spec.rollout
    assert rollout is not None
    if decision.promote and decision.state.candidate_version is not None:
        registry.set_alias(
            rollout.candidate.model, rollout.promote_alias, decision.state.candidate_version
        )
    saved = save_rollout(
        registry,
        spec.name,
        decision.state,
        expected=None if stored is None else stored.raw,
        events=decision.events,
        now=registry.clock.wall(),
    )
    if not saved:
        log.info("rollout of endpoint %s changed meanwhile; decision dropped", spec.name)
        return None
    for event in decision.events:
        log.info("endpoint %s: %s", spec.name, event.message)
    return decision


OPERATIONS = ("pause", "resume", "promote", "abort")


def operate(registry: Registry, endpoint: str, action: str, reason: str | None = None) -> Decision:
    """An operator's command on the rollout of ``endpoint``: pause, resume, promote or abort.

    Raises NotFoundError (no such endpoint), FailedPreconditionError (no rollout, or a state the
    command does not apply to, or the state changed while the command ran)."""
    if action not in OPERATIONS:
        raise InvalidInputError(f"action must be one of {list(OPERATIONS)}, got {action!r}")
    spec = load_endpoint(registry, endpoint)
    rollout = spec.rollout
    if rollout is None:
        raise FailedPreconditionError(f"endpoint {endpoint!r} has no rollout in its spec")
    stored = load_rollout(registry, endpoint)
    if stored is None:
        raise FailedPreconditionError(
            f"the rollout of endpoint {endpoint!r} has not started yet (the controller starts "
            "it on its next round)"
        )
    now = registry.clock.wall()
    state = stored.state
    if action == "pause":
        decision = policy.pause(state, now)
    elif action == "resume":
        decision = policy.resume(rollout, state, now)
    elif action == "promote":
        decision = policy.promote(rollout, state, now)
    else:
        decision = policy.abort(state, now, reason or "aborted by an operator")
    done = apply_decision(registry, spec, stored, decision)
    if done is None:
        raise FailedPreconditionError(
            f"the rollout of endpoint {endpoint!r} changed while this command ran; try again"
        )
    return done
