"""A follow whose MLflow hangs does not hold the controller: the round returns, the lease is
renewed and the rollout gates keep acting while the follow pass is still stuck in MLflow."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from modelyard.control import lease
from modelyard.control.controller import Controller
from modelyard.control.mlflow_follow import Follow, MlflowFollower, set_follow
from modelyard.errors import UnavailableError
from modelyard.registry.mlflow_source import MlflowRef, MlflowRegistry, MlflowVersion
from modelyard.traffic.rollout import Status
from tests.unit.control.conftest import HOLD, INTERVAL, Env

#: Only a safety net so that a broken test fails instead of hanging; nothing waits this long.
NEVER_S = 30.0


class HangingMlflow:
    """An MLflow whose every call blocks until ``release`` is set, then fails as unreachable."""

    tracking_uri = "http://hanging.test:5000"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def resolve(self, ref: MlflowRef) -> MlflowVersion:
        self.calls += 1
        self.entered.set()
        self.release.wait(NEVER_S)
        raise UnavailableError(f"MLflow is unreachable for {ref}")

    def download(self, version: MlflowVersion, destination: Path) -> Path:
        raise AssertionError("never reached")


def test_rollout_gates_run_while_a_follow_hangs_in_mlflow(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    hanging = HangingMlflow()

    def source_for(uri: str | None) -> MlflowRegistry:
        assert uri == hanging.tracking_uri
        return hanging

    set_follow(
        env.registry, Follow("iris", "models:/iris@champion", "production", hanging.tracking_uri)
    )
    follower = MlflowFollower(env.registry, interval_s=30.0, clock=env.clock, source_for=source_for)
    controller = Controller(
        env.registry,
        holder="c1",
        interval_s=1,
        stats_interval_s=INTERVAL,
        lease_ttl_s=5.0,
        passes=[follower.start],
    )
    try:
        with caplog.at_level(logging.INFO, logger="modelyard.controller"):
            (started,) = controller.round()  # returns although the follow pass is stuck
            assert started.state.status is Status.RUNNING
            assert hanging.entered.wait(NEVER_S)

            env.clock.advance(1)  # failures do not wait for the hold
            env.healthy_interval(errors=10)
            (rolled_back,) = controller.round()
            assert rolled_back.state.status is Status.ROLLED_BACK
            assert env.registry.aliases("fraud")["production"] == 1

            env.clock.advance(HOLD)  # past the lease TTL and the follow interval
            assert controller.round() == []
            assert controller.leader  # the lease was renewed by every round
            other = lease.try_acquire(env.registry, lease.CONTROLLER_LEASE, "c2", 5.0)
            assert not other
            assert hanging.calls == 1  # no second pass while the first one still runs
            assert "previous pass is still running" in caplog.text
    finally:
        hanging.release.set()
        assert follower.join(NEVER_S)
    assert "mlflow follow of iris@production: MLflow is unreachable" in caplog.text


def test_a_closed_follower_starts_no_pass(env: Env) -> None:
    follower = MlflowFollower(env.registry, interval_s=30.0, clock=env.clock)
    follower.close()
    assert not follower.start()
    assert follower.join(0)
