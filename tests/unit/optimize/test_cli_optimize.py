"""The convert / quantize / profile commands, through click, on a temporary registry."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner, Result
from sklearn.linear_model import LogisticRegression

from modelyard import cli_optimize
from modelyard.errors import FailedPreconditionError, InvalidInputError, ModelNotFoundError
from modelyard.optimize.converting import ParityError
from modelyard.registry import Registry
from tests.unit.optimize.models import matmul_classifier, mostly_float
from tests.unit.runtimes.models import iris_like


@pytest.fixture
def root(tmp_path: Path) -> Path:
    x, y = iris_like()
    with Registry(tmp_path / "reg") as reg:
        reg.push(LogisticRegression(max_iter=500).fit(x, y), name="iris", sample=x[:3])
        reg.push(matmul_classifier(tmp_path / "mlp.onnx"), name="mlp")
    return tmp_path / "reg"


def _group() -> click.Group:
    group = click.Group()
    cli_optimize.register(group)
    return group


def _run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(_group(), [*args, "--registry", str(root)])


def test_register_adds_the_three_commands() -> None:
    assert sorted(_group().commands) == ["convert", "profile", "quantize"]


def test_convert_prints_the_new_version_then_parity(root: Path) -> None:
    result = _run(root, "convert", "iris", "--alias", "onnx")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "iris:2"
    assert lines[1] == "converted iris:1 (sklearn) -> onnx"
    assert lines[2].startswith("parity: 1 rows, max abs diff ")
    assert lines[2].endswith("class agreement 100.00% (atol 0.0001) on the warm-up example, 1 row")
    with Registry(root) as reg:
        assert reg.resolve("iris", "onnx").manifest.runtime == "onnx"


def test_convert_errors_push_nothing(root: Path) -> None:
    refused = _run(root, "convert", "mlp:1")
    assert refused.exit_code == 1
    assert isinstance(refused.exception, FailedPreconditionError)
    assert "mlp:1 is already ONNX" in str(refused.exception)
    unknown = _run(root, "convert", "iris@production")
    assert isinstance(unknown.exception, ModelNotFoundError)
    beyond = _run(root, "convert", "iris:1", "--atol", "0")
    assert isinstance(beyond.exception, ParityError)
    with Registry(root) as reg:
        assert [v.version for v in reg.list_versions("iris")] == [1]


def test_quantize_reports_sizes_and_parity(root: Path) -> None:
    result = _run(root, "quantize", "mlp", "--sample", "random", "--rows", "32")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "mlp:2"
    assert lines[1].startswith("quantized mlp:1: 3 weight tensors to int8 (new ops: ")
    assert "MatMulInteger x3" in lines[1]
    with Registry(root) as reg:
        meta = reg.get_version("mlp", 2).metadata
    before, after = meta["size_bytes_before"], meta["size_bytes_after"]
    assert lines[2].startswith(f"size: {before:,} -> {after:,} bytes (-")
    assert lines[3].startswith("parity: 32 rows, max abs diff ")
    assert "note:" not in result.stdout


def test_quantize_says_when_the_file_hardly_shrinks(root: Path, tmp_path: Path) -> None:
    with Registry(root) as reg:
        reg.push(mostly_float(tmp_path / "float.onnx"), name="float")
    result = _run(root, "quantize", "float", "--max-abs-diff", "1000", "--min-agreement", "0")
    assert result.exit_code == 0, result.output
    assert "1 weight tensors to int8" in result.stdout  # the MatMul's; the constant stays
    assert "note: the file shrank by less than 10%" in result.stdout


def test_quantize_thresholds_refuse(root: Path) -> None:
    result = _run(root, "quantize", "mlp:1", "--max-abs-diff", "0")
    assert isinstance(result.exception, ParityError)
    assert "nothing pushed" in str(result.exception)


def test_profile_json(root: Path) -> None:
    args = ["profile", "mlp", "--seconds", "0", "--warmup", "1", "--batch-sizes", "4,1"]
    result = _run(root, *args, "--op-runs", "2", "--json")
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["model"] == "mlp:1"
    assert [b["batch_size"] for b in doc["batches"]] == [1, 4]
    assert [b["iterations"] for b in doc["batches"]] == [5, 5]  # --seconds 0: the minimum
    assert all(b["p50_s"] <= b["p99_s"] for b in doc["batches"])
    assert doc["ops"]["runs"] == 2 and doc["ops"]["batch_size"] == 4
    assert doc["memory_bytes"] > 0


def test_profile_table_and_plot(root: Path, tmp_path: Path) -> None:
    png = tmp_path / "latency.png"
    args = ["profile", "iris:1", "--seconds", "0", "--batch-sizes", "1,8", "--plot", str(png)]
    result = _run(root, *args)
    assert result.exit_code == 0, result.output
    assert "iris:1 (sklearn): predict latency per batch" in result.stdout
    assert "no operator breakdown: sklearn is not an ONNX runtime" in result.stdout
    assert f"plot: {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("sizes", ["0", "1,x", ""])
def test_profile_refuses_bad_batch_sizes(root: Path, sizes: str) -> None:
    result = _run(root, "profile", "mlp", "--batch-sizes", sizes)
    assert isinstance(result.exception, InvalidInputError)


def test_profile_without_matplotlib_says_how_to_get_it(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    args = ["profile", "mlp", "--seconds", "0", "--op-runs", "0", "--plot", str(tmp_path / "p.png")]
    result = _run(root, *args)
    assert result.exit_code == 1
    assert "pip install matplotlib" in str(result.exception)
    assert not (tmp_path / "p.png").exists()


def _iris_rows(n: int) -> list[list[float]]:
    x, _ = iris_like()
    return [[float(v) for v in row] for row in x[:n]]


@pytest.mark.parametrize("kind", ["json", "v2", "npz", "npy"])
def test_sample_file_gives_the_parity_rows(root: Path, tmp_path: Path, kind: str) -> None:
    import numpy as np

    rows = _iris_rows(40)
    if kind == "json":
        path = tmp_path / "sample.json"
        path.write_bytes(orjson.dumps({"input": rows}))
    elif kind == "v2":
        path = tmp_path / "sample.json"
        body = {"inputs": [{"name": "input", "shape": [40, 4], "datatype": "FP64", "data": rows}]}
        path.write_bytes(orjson.dumps(body))
    elif kind == "npz":
        path = tmp_path / "sample.npz"
        np.savez(path, input=np.asarray(rows))
    else:
        path = tmp_path / "sample.npy"
        np.save(path, np.asarray(rows))
    result = _run(root, "convert", "iris", "--sample-file", str(path))
    assert result.exit_code == 0, result.output
    parity = result.stdout.splitlines()[2]
    assert parity.startswith("parity: 40 rows, ")
    assert parity.endswith(f"on the sample file {path.name}, 40 rows")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"other": [[1.0, 2.0, 3.0, 4.0]]}, "unexpected input 'other'"),
        ({"input": [[1.0, 2.0, 3.0]]}, "shape [1, 3]"),
    ],
)
def test_a_sample_file_that_does_not_fit_is_refused(
    root: Path, tmp_path: Path, content: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(content))
    result = _run(root, "convert", "iris", "--sample-file", str(path))
    assert result.exit_code == 1
    assert isinstance(result.exception, InvalidInputError)
    assert message in str(result.exception)
    with Registry(root) as reg:
        assert [v.version for v in reg.list_versions("iris")] == [1]  # nothing pushed


def test_npz_with_a_missing_input_is_refused(root: Path, tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "bad.npz"
    np.savez(path, features=np.zeros((2, 4)))
    result = _run(root, "profile", "iris", "--sample-file", str(path), "--seconds", "0")
    assert result.exit_code == 1
    assert "missing: input; unexpected: features" in str(result.exception)
