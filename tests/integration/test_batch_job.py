"""Offline scoring for real: a batch job killed with SIGKILL and resumed, S3 in and out, scoring
through a running server (``--url``), and ``modelyard.load`` against that same server.

The killed job is deterministic without sleeps: its model (:class:`GatedDouble`) blocks on a gate
file once it sees a chosen row, and says so by touching ``blocked``; the test then reads the job
manifest to see which parts were published, and kills the process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import modelyard
from modelyard.cli import main
from modelyard.jobs.manifest import MANIFEST_NAME
from modelyard.registry.registry import Registry
from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.integration.conftest import S3Server
from tests.serverproc import ROOT, ServerProcess, start_server
from tests.slowmodel import wait_for_file
from tests.testmodels import linear_fp32_model, simple_model
from tests.unit.jobs.conftest import expected_output, write_parquet

pytestmark = pytest.mark.integration

GATE_CONFIG = "gated.json"


class GatedDouble(PythonModel):
    """x FP32 [-1, 1] -> y = 2x; blocks (touching ``blocked``) on a batch holding a row with
    x >= ``block_from`` until the file ``release`` exists in the gate directory."""

    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1, 1)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP32, shape=(-1, 1)),),
    )

    def __init__(self, gates: Path | None = None, block_from: float = 0.0) -> None:
        self.gates = gates
        self.block_from = block_from

    def save(self, directory: Path) -> None:
        config = {"gates": str(self.gates), "block_from": self.block_from}
        (directory / GATE_CONFIG).write_text(json.dumps(config))

    def load(self, path: Path) -> None:
        config = json.loads(next(path.rglob(GATE_CONFIG)).read_text())
        self.gates, self.block_from = Path(config["gates"]), float(config["block_from"])

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        x = np.asarray(inputs["x"], dtype=np.float32)
        assert self.gates is not None
        if x.size and float(x.max()) >= self.block_from:
            (self.gates / "blocked").touch()
            wait_for_file(self.gates / "release")
        return {"y": x * 2}


def batch_command(registry: Path, src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelyard",
        "batch",
        "gated",
        "--registry",
        str(registry),
        "--input",
        str(src),
        "--output",
        str(out),
        "--key",
        "id",
        "--part-rows",
        "100",
        "--batch-rows",
        "50",
    ]


def test_killed_job_resumes_with_every_key_exactly_once(tmp_path: Path) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    registry = tmp_path / "registry"
    with Registry(registry) as reg:
        reg.push(GatedDouble(gates, block_from=1050), name="gated")
    ids = np.arange(2000, dtype=np.int64)
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ids, "x": ids.astype(np.float32)}), src, row_group_size=100)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    job = subprocess.Popen(
        batch_command(registry, src, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_file(gates / "blocked")  # inside part 10 (rows 1000-1099)
        done = orjson.loads((out / MANIFEST_NAME).read_bytes())["parts"]
        assert sorted(done) == [f"part-{i:05d}" for i in range(10)]
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill()
        job.communicate(timeout=30)
    assert job.returncode == -signal.SIGKILL

    (gates / "release").touch()
    rerun = subprocess.run(
        batch_command(registry, src, out), env=env, capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "scored 1,000 rows in 10 parts (10 already done)" in rerun.stdout
    table = ds.dataset(out).to_table().sort_by("id")
    np.testing.assert_array_equal(table.column("id").to_numpy(), ids)  # each key exactly once
    np.testing.assert_array_equal(table.column("y").to_numpy(), ids.astype(np.float32) * 2)
    assert not [p for p in os.listdir(out) if ".tmp-" in p]


@pytest.fixture
def linear_registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    with Registry(root) as reg:
        reg.push(linear_fp32_model(tmp_path / "linear.onnx"), name="linear", alias="production")
    return root


def test_s3_input_and_output(linear_registry: Path, s3_server: S3Server, tmp_path: Path) -> None:
    options = s3_server.storage_options()
    import fsspec

    fs = fsspec.filesystem("s3", **options)
    prefix = f"{s3_server.bucket}/batch-{tmp_path.name}"
    for i, start in enumerate((0, 150)):
        local = write_parquet(tmp_path / f"in{i}.parquet", 150, start=start, row_group_rows=50)
        fs.put(str(local), f"{prefix}/in/part{i}.parquet")
    args = ["batch", "linear", "--registry", str(linear_registry), "--key", "id"]
    args += ["--input", f"s3://{prefix}/in", "--output", f"s3://{prefix}/out", "--part-rows", "100"]
    env = {
        "MODELYARD_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "MODELYARD_S3_KEY": s3_server.key,
        "MODELYARD_S3_SECRET": s3_server.secret,
    }
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "scored 300 rows in 4 parts" in result.output
    assert "model inputs from columns: input <- " in result.output  # which columns fed it
    fs.invalidate_cache()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{prefix}/out"))
    assert names == [MANIFEST_NAME, *(f"part-{i:05d}.parquet" for i in range(4))]
    table = ds.dataset(f"{prefix}/out", filesystem=fs).to_table().sort_by("id")
    got = table.column("id").to_numpy()
    np.testing.assert_array_equal(got, np.arange(300))
    np.testing.assert_allclose(table.column("output").to_numpy(), expected_output(got), rtol=1e-6)
    again = CliRunner().invoke(main, args, env=env)
    assert "scored 0 rows in 0 parts (4 already done)" in again.output


# ---- the same answers in-process and from a server ---------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("served")
    root = tmp / "registry"
    with Registry(root) as reg:
        reg.push(linear_fp32_model(tmp / "linear.onnx"), name="linear", alias="production")
        reg.push(simple_model(tmp / "simple.onnx"), name="simple")
    server = start_server(root)
    try:
        yield root, server
    finally:
        server.terminate()


def test_batch_through_a_server_equals_batch_in_process(
    served: tuple[Path, ServerProcess], tmp_path: Path
) -> None:
    registry, server = served
    src = write_parquet(tmp_path / "in.parquet", 500, row_group_rows=100)
    tables = {}
    for how, extra in (("local", []), ("remote", ["--url", server.base_url])):
        out = tmp_path / how
        args = ["batch", "linear@production", "--registry", str(registry), "--input", str(src)]
        result = CliRunner().invoke(main, [*args, "--output", str(out), "--key", "id", *extra])
        assert result.exit_code == 0, result.output
        assert "linear:1: scored 500 rows" in result.output
        tables[how] = ds.dataset(out).to_table().sort_by("id")
    assert tables["local"].equals(tables["remote"])


def post_v2(server: ServerProcess, model: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    body = {
        "inputs": [
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": Datatype.from_numpy(arr.dtype).value,
                "data": arr.reshape(-1).tolist(),
            }
            for name, arr in inputs.items()
        ]
    }
    response = httpx.post(f"{server.base_url}/v2/models/{model}/infer", json=body, timeout=30)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def test_load_gives_the_servers_outputs(served: tuple[Path, ServerProcess]) -> None:
    registry, server = served
    rng = np.random.default_rng(7)
    cases = {
        "linear@production": {"input": rng.standard_normal((16, 20)).astype(np.float32)},
        "simple": {
            "INPUT0": rng.integers(-1000, 1000, (3, 16), dtype=np.int32),
            "INPUT1": rng.integers(-1000, 1000, (3, 16), dtype=np.int32),
        },
    }
    for ref, inputs in cases.items():
        with modelyard.load(ref, registry=str(registry)) as predictor:
            local = predictor.predict(inputs)
            served_version = str(predictor.version)
        doc = post_v2(server, ref.split("@")[0], inputs)
        assert doc["model_version"] == served_version
        for out in doc["outputs"]:
            want = np.asarray(out["data"], dtype=Datatype(out["datatype"]).numpy_dtype)
            got = local[out["name"]]
            assert list(got.shape) == out["shape"]
            np.testing.assert_array_equal(got.reshape(-1), want)
