"""The ``modelyard`` CLI end to end, through click's CliRunner, against a registry in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from modelyard.cli import main
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests.testmodels import simple_model

pytestmark = pytest.mark.e2e

A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 2, dtype=np.int32)
SIMPLE_INPUT = json.dumps({"INPUT0": A.tolist(), "INPUT1": B.tolist()})


@pytest.fixture(autouse=True)
def _no_modelyard_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MODELYARD_"):
            monkeypatch.delenv(key)


@pytest.fixture
def registry(tmp_path: Path) -> str:
    return str(tmp_path / "registry")


@pytest.fixture
def simple_onnx(tmp_path: Path) -> Path:
    return simple_model(tmp_path / "models" / "simple.onnx")


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    # MODELYARD_CONFIG is listed so that whatever a command sets there is undone afterwards;
    # wide COLUMNS keeps rich tables on one line per row.
    base: dict[str, str | None] = {"MODELYARD_CONFIG": None, "COLUMNS": "200"}
    return CliRunner().invoke(main, list(args), env={**base, **(env or {})})


def ok(*args: str, env: dict[str, str | None] | None = None) -> str:
    result = run(*args, env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def fails(*args: str, message: str, env: dict[str, str | None] | None = None) -> None:
    result = run(*args, env=env)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_push_list_alias_predict(registry: str, simple_onnx: Path) -> None:
    meta = '{"git_sha": "abc123", "auc": 0.91}'
    push = ("push", str(simple_onnx), "--name", "simple", "--registry", registry)
    assert ok(*push, "--metadata", meta).strip() == "simple:1"
    assert ok(*push, "--alias", "production").strip() == "simple:2"

    models = ok("models", "--registry", registry)
    assert "simple" in models and "production=2" in models

    versions = ok("versions", "simple", "--registry", registry)
    assert "onnx" in versions and "abc123" in versions and "production" in versions

    assert ok("alias", "simple", "1", "production", "--registry", registry).strip() == (
        "simple@production -> simple:1"
    )
    assert "production=1" in ok("models", "--registry", registry)

    for ref in ("simple", "simple@production", "simple:1", "simple:2"):
        out = json.loads(ok("predict", ref, "--input", SIMPLE_INPUT, "--registry", registry))
        assert out == {"OUTPUT0": (A + B).tolist(), "OUTPUT1": (A - B).tolist()}, ref


def test_registry_from_env_and_v2_body_from_file(
    registry: str, simple_onnx: Path, tmp_path: Path
) -> None:
    env: dict[str, str | None] = {"MODELYARD_REGISTRY": registry}
    assert ok("push", str(simple_onnx), "--name", "simple", env=env).strip() == "simple:1"
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": A.ravel().tolist()},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": B.ravel().tolist()},
        ]
    }
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    out = json.loads(ok("predict", "simple", "--input", f"@{request}", env=env))
    assert out["OUTPUT0"] == (A + B).tolist()
    # A single row without its batch axis gets one.
    row = json.dumps({"INPUT0": A[0].tolist(), "INPUT1": B[0].tolist()})
    assert json.loads(ok("predict", "simple", "--input", row, env=env))["OUTPUT1"] == (
        (A - B).tolist()
    )


def test_empty_registry_lists_no_models(registry: str) -> None:
    fails("models", "--registry", registry, message=f"no registry at {registry}")
    assert not Path(registry).exists()
    Registry(registry).close()
    assert "models in" in ok("models", "--registry", registry)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("predict", "nosuch", "--input", "{}"), "nosuch"),
        (("predict", "simple:9", "--input", SIMPLE_INPUT), "9"),
        (("predict", "simple@canary", "--input", SIMPLE_INPUT), "canary"),
        (("predict", "simple", "--input", "{not json"), "--input is not valid JSON"),
        (("predict", "simple", "--input", "@/no/such/file.json"), "--input @/no/such/file.json"),
        (("predict", "simple", "--input", '{"INPUT9": [1]}'), "unexpected input 'INPUT9'"),
        (
            ("predict", "simple", "--input", json.dumps({"INPUT0": A.tolist()})),
            "missing input 'INPUT1'",
        ),
        (
            ("predict", "simple", "--input", '{"INPUT0": [[1, 2]], "INPUT1": [[1, 2]]}'),
            "input 'INPUT0' has shape [1, 2]",
        ),
        (
            ("predict", "simple", "--input", json.dumps({"INPUT0": [[0.5] * 16]})),
            "input 'INPUT0' is INT32: give integers",
        ),
        (("predict", "simple:x", "--input", "{}"), "NAME@ALIAS or NAME:VERSION"),
        (("alias", "simple", "7", "production"), "7"),
        (("alias", "simple", "1", "42"), "42"),
        (("versions", "nosuch"), "nosuch"),
        (("push", "{onnx}", "--name", "../evil"), "../evil"),
        (
            ("push", "{onnx}", "--name", "x", "--metadata", "[1]"),
            "--metadata must be a JSON object",
        ),
        (("push", "{onnx}", "--name", "x", "--metadata", "{"), "--metadata is not valid JSON"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_1(
    registry: str, simple_onnx: Path, args: tuple[str, ...], message: str
) -> None:
    ok("push", str(simple_onnx), "--name", "simple", "--registry", registry)
    args = tuple(str(simple_onnx) if a == "{onnx}" else a for a in args)
    fails(*args, "--registry", registry, message=message)


def test_bad_settings_name_the_field(registry: str) -> None:
    fails(
        "models",
        env={"MODELYARD_REGISTRY": registry, "MODELYARD_WORKERS": "many"},
        message="workers",
    )
    fails("serve", "--http-port", "70000", "--registry", registry, message="setting 'http_port'")


def test_serve_builds_settings_from_flags_and_config(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Settings] = []

    def fake_serve(settings: Settings) -> int:
        seen.append(settings)
        return 3

    monkeypatch.setattr("modelyard.app.serve", fake_serve)
    config = tmp_path / "modelyard.yaml"
    config.write_text("log_level: debug\nhttp_port: 9000\nworkers: 2\n")
    args = ["serve", "--registry", registry, "--http-port", "0", "--grpc-port", "-1"]
    args += ["--preload", "iris,simple", "--demo", "--config", str(config)]
    result = run(*args)
    assert result.exit_code == 3, result.output
    (settings,) = seen
    assert settings.registry == registry
    assert (settings.http_port, settings.grpc_port) == (0, -1)
    assert settings.preload == ("iris", "simple")
    assert settings.demo is True
    assert (settings.log_level, settings.workers) == ("debug", 2)  # from the config file


def test_serve_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []

    def fake_serve(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("modelyard.app.serve", fake_serve)
    assert run("serve").exit_code == 0
    assert seen == [Settings()]


@pytest.mark.parametrize("command", ["serve", "push", "models", "versions", "alias", "predict"])
def test_every_command_has_help(command: str) -> None:
    out = ok(command, "--help")
    assert f"Usage: main {command}" in out or f"Usage: modelyard {command}" in out
    assert "--registry" in out


def test_python_dash_m_runs_the_cli(registry: str) -> None:
    Registry(registry).close()
    proc = subprocess.run(
        [sys.executable, "-m", "modelyard", "models", "--registry", registry],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "models in" in proc.stdout
