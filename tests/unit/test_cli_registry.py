"""The CLI and a registry that does not exist, pushes that need an opt-in or get a broken file,
and tables written to a pipe; through click's runner."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from modelyard.cli import main
from modelyard.errors import RegistryNotFoundError
from modelyard.registry.registry import Registry
from tests.testmodels import linear_fp32_model

HINT = "create one with `modelyard push` or `modelyard serve --demo`"

READ_ONLY = [
    ["models"],
    ["versions", "iris"],
    ["alias", "iris", "1", "production"],
    ["predict", "iris", "--input", '{"input": [[1.0]]}'],
    ["idle"],
    ["drift", "report", "iris"],
    ["endpoint", "list"],
    ["endpoint", "show", "web"],
    ["endpoint", "delete", "web"],
    ["rollout", "status", "web"],
    ["rollout", "events", "web"],
    ["rollout", "pause", "web"],
    ["shadow", "report", "web"],
    ["mlflow", "follows"],
    ["mlflow", "unfollow", "iris"],
    ["convert", "iris"],
    ["profile", "iris"],
]


def invoke(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: " ".join(c[:2]))
def test_read_only_commands_refuse_a_missing_registry(tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "typo-reg"
    code, out = invoke(*command, "--registry", str(typo))
    assert code == 1, out
    assert out.strip() == f"error: no registry at {typo} ({HINT})"
    assert not typo.exists()


def test_a_missing_sqlite_url_names_the_file_it_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = invoke("models", "--registry", "sqlite:///tmp/x.db")  # relative: ./tmp/x.db
    assert code == 1
    assert f"no file {tmp_path / 'tmp' / 'x.db'}" in out
    absolute = tmp_path / "abs" / "x.db"
    code, out = invoke("models", "--registry", f"sqlite:///{absolute}")  # four slashes
    assert code == 1 and f"no file {absolute} ({HINT})" in out
    assert list(tmp_path.iterdir()) == []


def test_push_creates_the_registry_then_readers_open_it(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    model = linear_fp32_model(tmp_path / "linear.onnx")
    code, out = invoke("push", str(model), "--name", "linear", "--registry", str(reg))
    assert (code, out.strip()) == (0, "linear:1")
    code, out = invoke("models", "--registry", str(reg), env={"COLUMNS": "200"})
    assert code == 0 and "linear" in out
    db = tmp_path / "db" / "reg.db"
    code, _ = invoke("push", str(model), "--name", "linear", "--registry", f"sqlite:///{db}")
    assert code == 0 and db.is_file()
    assert invoke("versions", "linear", "--registry", f"sqlite:///{db}")[0] == 0


def test_registry_create_false(tmp_path: Path) -> None:
    with pytest.raises(RegistryNotFoundError, match="no registry at"):
        Registry(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()  # an SQLite file, but no registry in it
    with pytest.raises(RegistryNotFoundError, match="has no registry tables"):
        Registry(f"sqlite:///{other}", create=False)
    Registry(tmp_path / "made").close()
    Registry(tmp_path / "made", create=False).close()


@pytest.fixture
def joblib_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    model = LogisticRegression().fit(rng.normal(size=(20, 4)), np.arange(20) % 2)
    path = tmp_path / "iris.joblib"
    joblib.dump(model, path)
    return path


def test_push_of_a_pickle_names_the_flag_and_warns_about_serving(
    tmp_path: Path, joblib_file: Path
) -> None:
    reg = str(tmp_path / "reg")
    env: dict[str, str | None] = {"MODELYARD_ALLOW_PICKLE": None}
    code, out = invoke("push", str(joblib_file), "--name", "iris", "--registry", reg, env=env)
    assert code == 1
    assert "pass --allow-pickle" in out and "allow_pickle=True" not in out
    result = CliRunner().invoke(
        main, ["push", str(joblib_file), "--name", "iris", "--allow-pickle", "--registry", reg],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "iris:1"
    warning = result.stderr.strip()
    assert warning.startswith("warning: iris:1") and "MODELYARD_ALLOW_PICKLE=true" in warning
    assert len(warning.splitlines()) == 1
    allowed = CliRunner().invoke(
        main, ["push", str(joblib_file), "--name", "iris", "--registry", reg],
        env={"MODELYARD_ALLOW_PICKLE": "true"},
    )  # fmt: skip
    assert allowed.exit_code == 0 and allowed.stderr == ""


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "the file is empty"), (b"\x08\x07", "it has no graph")]
)
def test_push_of_an_empty_onnx_file_says_it_is_not_onnx(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(content)
    code, out = invoke("push", str(path), "--name", "bad", "--registry", str(tmp_path / "reg"))
    assert code == 1
    assert out.strip() == f"error: {path}: not a readable ONNX model ({reason})"


def test_mlflow_follow_help_names_the_controller_setting() -> None:
    code, out = invoke("mlflow", "follow", "--help")
    assert code == 0
    assert "--controller" not in out and "MODELYARD_CONTROLLER" in out


def test_tables_written_to_a_pipe_do_not_wrap(tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    metadata = '{"description": "' + "a long description " * 6 + '"}'
    model = linear_fp32_model(tmp_path / "linear.onnx")
    code, out = invoke(
        "push", str(model), "--name", "linear", "--metadata", metadata, "--registry", str(reg)
    )
    assert code == 0, out
    code, out = invoke("versions", "linear", "--registry", str(reg), env={"COLUMNS": None})
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and "a long description " * 6 in rows[0]
    code, out = invoke("versions", "linear", "--registry", str(reg), env={"COLUMNS": "60"})
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 60  # COLUMNS wins
