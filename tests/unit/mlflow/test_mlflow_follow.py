"""Follows (a ModelYard alias kept on an MLflow alias by the controller): records, the
follower's schedule on a fake clock, failure isolation, and the controller's pass hook."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelyard.cli import main
from modelyard.control.controller import Controller
from modelyard.control.mlflow_follow import (
    FOLLOW_KEY,
    Follow,
    MlflowFollower,
    follows,
    parse_follow,
    remove_follow,
    set_follow,
)
from modelyard.core.clock import FakeClock
from modelyard.errors import InvalidInputError
from modelyard.registry import Registry
from modelyard.registry.mlflow_source import MlflowRegistry
from tests.unit.mlflow.fakes import ONNX_FLAVOR, FakeMlflow, onnx_bytes


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(tmp_path: Path, clock: FakeClock) -> Iterator[Registry]:
    reg = Registry(tmp_path / "reg", clock=clock)
    yield reg
    reg.close()


@pytest.fixture
def mlflow(tmp_path: Path) -> FakeMlflow:
    fake = FakeMlflow(tmp_path / "mlflow")
    fake.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes(0)})
    fake.add("iris", ONNX_FLAVOR, {"model.onnx": onnx_bytes(1)})
    fake.aliases["iris", "champion"] = 1
    return fake


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("models:/iris@champion", "must be a mapping"),
        ({"uri": "models:/iris/3", "alias": "production"}, "models:/NAME@ALIAS"),
        ({"uri": "runs:/x/model", "alias": "production"}, "not an MLflow model URI"),
        ({"uri": "models:/iris@champion"}, "alias must be a string"),
        ({"uri": "models:/iris@champion", "alias": "Bad Alias!"}, "alias"),
        ({"uri": "models:/iris@champion", "alias": "production", "tracking_uri": 5}, "tracking"),
    ],
)
def test_malformed_follow_records(doc: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_follow("iris", doc)


def test_set_list_and_remove_follows(registry: Registry) -> None:
    set_follow(registry, Follow("flowers", "models:/iris@champion", "production", "http://m:5000"))
    set_follow(registry, Follow("fraud", "mlflow:/fraud@prod", "candidate"))
    assert follows(registry) == [
        Follow("flowers", "models:/iris@champion", "production", "http://m:5000"),
        Follow("fraud", "mlflow:/fraud@prod", "candidate"),
    ]
    set_follow(registry, Follow("fraud", "mlflow:/fraud@prod", "production"))  # replaces
    assert [f.alias for f in follows(registry)] == ["production", "production"]
    assert remove_follow(registry, "fraud")
    assert not remove_follow(registry, "fraud")
    assert [f.model for f in follows(registry)] == ["flowers"]


def test_a_malformed_record_is_skipped_not_fatal(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.create_model("broken", metadata={FOLLOW_KEY: {"uri": "nope"}})
    set_follow(registry, Follow("iris", "models:/iris@champion", "production"))
    with caplog.at_level(logging.WARNING, logger="modelyard.controller"):
        assert [f.model for f in follows(registry)] == ["iris"]
    assert "ignoring a follow" in caplog.text


def follower(
    registry: Registry, clock: FakeClock, sources: dict[str | None, MlflowRegistry], **kw: Any
) -> MlflowFollower:
    def source_for(uri: str | None) -> MlflowRegistry:
        return sources[uri]

    return MlflowFollower(registry, interval_s=30.0, clock=clock, source_for=source_for, **kw)


def test_follower_syncs_on_its_interval(
    registry: Registry, clock: FakeClock, mlflow: FakeMlflow
) -> None:
    set_follow(registry, Follow("iris", "models:/iris@champion", "production"))
    run = follower(registry, clock, {None: mlflow})

    changed = run.round()
    assert [(r.action, r.version.version) for r in changed] == [("imported", 1)]
    assert registry.aliases("iris") == {"production": 1}

    mlflow.aliases["iris", "champion"] = 2
    clock.advance(29.0)
    assert run.round() == []  # too soon: MLflow is not asked
    assert registry.aliases("iris") == {"production": 1}
    clock.advance(1.0)
    assert [(r.action, r.version.version) for r in run.round()] == [("imported", 2)]
    assert registry.aliases("iris") == {"production": 2}
    clock.advance(30.0)
    assert run.round() == []  # nothing changed in MLflow
    assert mlflow.downloads == 2


def test_a_failing_follow_does_not_stop_the_others(
    registry: Registry, clock: FakeClock, mlflow: FakeMlflow, caplog: pytest.LogCaptureFixture
) -> None:
    set_follow(registry, Follow("absent", "models:/absent@champion", "production"))
    set_follow(registry, Follow("iris", "models:/iris@champion", "production", "http://b"))
    other = FakeMlflow(mlflow.root.parent / "other")
    run = follower(registry, clock, {None: other, "http://b": mlflow})
    with caplog.at_level(logging.WARNING, logger="modelyard.controller"):
        changed = run.round()
    assert [r.version.model for r in changed] == ["iris"]
    assert "mlflow follow of absent@production" in caplog.text


def test_pickle_only_when_the_follower_allows_it(
    registry: Registry, clock: FakeClock, mlflow: FakeMlflow, caplog: pytest.LogCaptureFixture
) -> None:
    import pickle

    from sklearn.linear_model import LogisticRegression

    from tests.unit.mlflow.fakes import X, Y

    flavors = {"sklearn": {"pickled_model": "model.pkl", "serialization_format": "pickle"}}
    version = mlflow.add(
        "iris", flavors, {"model.pkl": pickle.dumps(LogisticRegression().fit(X, Y))}
    )
    mlflow.aliases["iris", "champion"] = version
    set_follow(registry, Follow("iris", "models:/iris@champion", "production"))
    with caplog.at_level(logging.WARNING, logger="modelyard.controller"):
        assert follower(registry, clock, {None: mlflow}).round() == []
    assert "allow_pickle" in caplog.text
    allowed = follower(registry, clock, {None: mlflow}, allow_pickle=True).round()
    assert [r.version.manifest.runtime for r in allowed] == ["sklearn"]


def test_controller_runs_its_passes_only_as_leader_and_contains_failures(
    registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    leader = Controller(
        registry,
        holder="a",
        interval_s=1,
        stats_interval_s=1,
        passes=[broken, lambda: calls.append("second")],
    )
    standby = Controller(
        registry,
        holder="b",
        interval_s=1,
        stats_interval_s=1,
        passes=[lambda: calls.append("standby")],
    )
    with caplog.at_level(logging.WARNING, logger="modelyard.controller"):
        leader.round()
        standby.round()
    assert calls == ["broken", "second"]
    assert "boom" in caplog.text


@pytest.fixture
def cli_mlflow(mlflow: FakeMlflow, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``modelyard mlflow ARGS`` with the fake MLflow at the tracking URI in effect."""
    from modelyard import cli_mlflow
    from modelyard.settings import Settings

    def source(settings: Settings) -> FakeMlflow:
        mlflow.tracking_uri = settings.mlflow_tracking_uri or "sqlite:///mlflow.db"
        return mlflow

    monkeypatch.setattr(cli_mlflow, "mlflow_source", source)
    monkeypatch.delenv("MODELYARD_MLFLOW_TRACKING_URI", raising=False)

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["mlflow", *args], env=env)

    return invoke


def test_follow_records_the_tracking_uri_in_effect(
    cli_mlflow: Callable[..., Result], tmp_path: Path
) -> None:
    reg = str(tmp_path / "cli-reg")
    env = {"MODELYARD_MLFLOW_TRACKING_URI": "http://from-setting:5000"}
    done = cli_mlflow("follow", "models:/iris@champion", "--registry", reg, env=env)
    assert done.exit_code == 0, done.output
    assert "iris@production follows models:/iris@champion (http://from-setting:5000)" in (
        done.output
    )
    flag = ["--tracking-uri", "http://from-flag:5000", "--name", "flowers"]
    done = cli_mlflow("follow", "models:/iris@champion", *flag, "--registry", reg, env=env)
    assert done.exit_code == 0, done.output
    with Registry(reg) as registry:
        assert {f.model: f.tracking_uri for f in follows(registry)} == {
            "iris": "http://from-setting:5000",
            "flowers": "http://from-flag:5000",
        }


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/iris@nope", "MLflow has no models:/iris@nope"),
        ("models:/iris/1", "follow needs an MLflow alias"),
    ],
)
def test_follow_refuses_what_mlflow_does_not_have(
    cli_mlflow: Callable[..., Result], tmp_path: Path, uri: str, message: str
) -> None:
    reg = tmp_path / "cli-reg"
    done = cli_mlflow("follow", uri, "--registry", str(reg), "--tracking-uri", "http://m:5000")
    assert done.exit_code == 1
    assert message in done.output
    assert not reg.exists()  # nothing recorded


def test_configure_client_bounds_mlflow_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.registry.mlflow_source import configure_client

    names = ("TIMEOUT", "MAX_RETRIES")
    for var in [f"MLFLOW_HTTP_REQUEST_{n}" for n in names] + [
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    ]:
        monkeypatch.setenv(var, "unset")  # restored after the test
    configure_client(10, 2, progress=False)
    from mlflow.environment_variables import (
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 10
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False
