"""``modelyard drift reference`` and ``modelyard drift report`` through the click command group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.core.clock import FakeClock
from modelyard.monitoring import drift
from modelyard.monitoring.drift_reports import run_drift_pass, write_sketches
from modelyard.monitoring.sketches import Sketcher
from modelyard.registry.registry import Registry
from tests.testmodels import linear_fp32_model


@pytest.fixture
def reg_dir(tmp_path: Path) -> Path:
    with Registry(tmp_path / "reg") as reg:
        reg.push(linear_fp32_model(tmp_path / "linear.onnx"), name="linear")
    return tmp_path / "reg"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def attach_reference(tmp_path: Path, reg_dir: Path) -> np.ndarray:
    rng = np.random.default_rng(5)
    train = rng.normal(size=(5000, 20)).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=train)
    np.savez(tmp_path / "out.npz", output=train.sum(axis=1, keepdims=True))
    code, out = run(
        "drift", "reference", "linear", "--version", "1", "--registry", str(reg_dir),
        "--inputs", str(tmp_path / "in.npz"), "--outputs", str(tmp_path / "out.npz"),
    )  # fmt: skip
    assert code == 0, out
    assert "20 input and 1 output features" in out
    return train


def test_reference_then_report(tmp_path: Path, reg_dir: Path) -> None:
    attach_reference(tmp_path, reg_dir)
    code, out = run("drift", "report", "linear", "--registry", str(reg_dir))
    assert code == 1 and "no drift report for linear yet" in out

    clock = FakeClock()
    with Registry(reg_dir, clock=clock) as reg:
        reference = reg.get_version("linear", 1).metadata[drift.REFERENCE_KEY]
        sketcher = Sketcher(reference)
        served = np.random.default_rng(6).normal(size=(1000, 20)).astype(np.float32)
        served[:, 4] *= 3.0
        sketch = sketcher.empty()
        sketcher.add(sketch, {"input": served}, {"output": served.sum(axis=1, keepdims=True)})
        sketch["rows"] = 1000
        write_sketches(reg, "r1", {(clock.wall(), "linear", "1"): sketch})
        run_drift_pass(reg, now=clock.wall() + 10, window_s=60)

    code, out = run("drift", "report", "linear", "--registry", str(reg_dir))
    assert code == 0, out
    assert "linear v1  ALARM  1000 rows in 60 s" in out
    rows = [
        line.split() for line in out.splitlines() if line.split()[:1] in (["input"], ["output"])
    ]
    assert [r[1] for r in rows] == [f"input[{j}]" for j in range(20)] + ["output[0]"]
    lines = {r[1]: " ".join(r) for r in rows}
    assert lines["input[4]"].split()[-1] == "alarm"
    assert lines["input[5]"].split()[-1] == "ok"
    assert "drift alarm on linear:1: inputs:input[4]" in out  # the event

    code, out = run(
        "drift", "report", "linear", "--version", "1", "--json", "--registry", str(reg_dir)
    )
    assert code == 0
    doc = orjson.loads(out)
    assert doc["status"] == "alarm" and doc["alarms"] == ["inputs:input[4]"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("drift", "report", "nope"), "model 'nope' not found"),
        (("drift", "report", "linear", "--version", "7"), "no drift report for linear v7"),
        (
            ("drift", "reference", "linear", "--version", "1", "--inputs", "BAD"),
            "expected a .npz archive",
        ),
        (
            ("drift", "reference", "linear", "--version", "1", "--inputs", "GARBAGE"),
            "not a readable .npz file",
        ),
        (
            ("drift", "reference", "linear", "--version", "1", "--inputs", "NPZ", "--bins", "1"),
            "bins must be between 2 and 100",
        ),
        (
            ("drift", "reference", "linear", "--version", "9", "--inputs", "NPZ"),
            "has no version 9",
        ),
        (
            ("drift", "reference", "linear", "--version", "1", "--inputs", "WRONG"),
            "holds arrays ['input', 'x'], but the inputs of linear:1 are ['input']",
        ),
        (
            (
                "drift",
                "reference",
                "linear",
                "--version",
                "1",
                "--inputs",
                "NPZ",
                "--outputs",
                "NPZ",
            ),
            "holds arrays ['input'], but the outputs of linear:1 are ['output']",
        ),
    ],
)
def test_errors_are_one_red_line(
    tmp_path: Path, reg_dir: Path, args: tuple[str, ...], message: str
) -> None:
    np.save(tmp_path / "bad.npy", np.zeros(3))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "ok.npz", input=np.zeros((10, 20), dtype=np.float32))
    np.savez(tmp_path / "wrong.npz", input=np.zeros((10, 20)), x=np.zeros((10, 20)))
    files = {"BAD": "bad.npy", "GARBAGE": "garbage.npz", "NPZ": "ok.npz", "WRONG": "wrong.npz"}
    argv = [str(tmp_path / files[a]) if a in files else a for a in args]
    code, out = run(*argv, "--registry", str(reg_dir))
    assert code == 1
    assert out.startswith("error: ") and message in out and len(out.splitlines()) == 1
