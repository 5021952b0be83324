"""MLflow's model registry as a source, against a real MLflow tracking server (started by the
fixture, SQLite backend, artifacts served over HTTP): import a version into a ModelYard registry
on PostgreSQL + S3, follow an alias through a promotion and a rollback, and the CLI."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from modelyard.cli import main
from modelyard.cli_mlflow import follow
from modelyard.cli_predict import load_runtime
from modelyard.errors import ModelNotFoundError, UnsafeArtifactError
from modelyard.registry import Registry
from modelyard.registry.mlflow_source import MlflowSource, import_version, sync_alias
from modelyard.settings import Settings
from tests.integration.conftest import _free_port, service_missing

pytestmark = pytest.mark.timeout(300)

X = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]] * 4)
Y = np.array([0, 2, 1] * 4)


@pytest.fixture(scope="module")
def mlflow_uri() -> Iterator[str]:
    """``mlflow server`` on a free port: SQLite metadata, artifacts proxied over HTTP."""
    try:  # the full distribution: mlflow-skinny alone cannot run the server
        importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        service_missing("the mlflow package (with its server) is not installed")
    base = Path(tempfile.mkdtemp(prefix="modelyard-mlflow-"))
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{base}/mlflow.db", "--workers", "1"]
    cmd += ["--artifacts-destination", str(base / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while not _healthy(uri):
            if proc.poll() is not None or time.monotonic() > deadline:
                text = (base / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start:\n{text}")
            time.sleep(0.25)  # waiting for another process to come up, not synchronising
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class Logger:
    """Logs models to the MLflow server the way a training job would (flavor save_model +
    log_artifacts into a run, then a registered model version)."""

    def __init__(self, uri: str, tmp: Path) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.tmp = tmp
        self.run_id = self.client.create_run(
            self.client.create_experiment(uuid.uuid4().hex)
        ).info.run_id

    def register(self, name: str, kind: str, seed: int = 0) -> int:
        with warnings.catch_warnings():  # MLflow warns about its own type hints on import
            warnings.simplefilter("ignore")
            return self._register(name, kind, seed)

    def _register(self, name: str, kind: str, seed: int) -> int:
        import mlflow.onnx
        import mlflow.sklearn

        model = LogisticRegression(max_iter=500, C=1.0 + seed).fit(X, Y)
        path = self.tmp / f"{name}-{kind}-{seed}-{uuid.uuid4().hex[:6]}"
        if kind == "onnx":
            from skl2onnx import to_onnx

            onx = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})
            mlflow.onnx.save_model(onx, path, pip_requirements=["onnx"])
        else:  # "skops" or "cloudpickle"
            mlflow.sklearn.save_model(
                model, path, serialization_format=kind, pip_requirements=["scikit-learn"]
            )
        artifact_path = path.name
        self.client.log_artifacts(self.run_id, str(path), artifact_path)
        if not self.client.search_registered_models(filter_string=f"name = '{name}'"):
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(
            name, source=f"runs:/{self.run_id}/{artifact_path}", run_id=self.run_id
        )
        return int(mv.version)

    def alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))


@pytest.fixture
def logger(mlflow_uri: str, tmp_path: Path) -> Logger:
    return Logger(mlflow_uri, tmp_path)


def predict(registry: Registry, name: str) -> dict[str, Any]:
    version = registry.resolve(name, None)
    runtime = load_runtime(registry, version, Settings())
    spec = version.manifest.signature.inputs[0]
    return runtime.predict({spec.name: X[:3].astype(spec.datatype.numpy_dtype)})


def test_import_and_follow_an_alias_into_postgres_and_s3(
    mlflow_uri: str, logger: Logger, pg_s3_registry: Registry
) -> None:
    name = f"iris{uuid.uuid4().hex[:6]}"
    v1 = logger.register(name, "onnx", seed=0)
    v2 = logger.register(name, "skops", seed=1)
    logger.alias(name, "champion", v1)
    source = MlflowSource(mlflow_uri)
    reg = pg_s3_registry

    first = sync_alias(reg, source, f"models:/{name}@champion")
    assert (first.action, first.version.version, first.mlflow.version) == ("imported", 1, v1)
    assert first.version.manifest.runtime == "onnx"
    assert first.version.metadata["mlflow"]["tracking_uri"] == mlflow_uri
    assert first.version.metadata["mlflow"]["run_id"] == logger.run_id
    labels = predict(reg, name)["label"]
    assert list(labels) == [0, 2, 1]

    assert sync_alias(reg, source, f"models:/{name}@champion").action == "unchanged"

    logger.alias(name, "champion", v2)  # promoted in MLflow: a skops scikit-learn model
    promoted = sync_alias(reg, source, f"models:/{name}@champion")
    assert (promoted.action, promoted.version.version, promoted.previous) == ("imported", 2, 1)
    assert reg.resolve(name, "production").manifest.runtime == "sklearn"
    assert list(predict(reg, name)["label"]) == [0, 2, 1]

    logger.alias(name, "champion", v1)  # rolled back in MLflow: the first copy again
    back = sync_alias(reg, source, f"models:/{name}@champion")
    assert (back.action, back.version.version) == ("moved", 1)
    assert [v.version for v in reg.list_versions(name)] == [1, 2]
    # Every file was checksummed on the way in and verifies on the way out (S3 -> local).
    for version in reg.list_versions(name):
        assert all(f.sha256 for f in version.manifest.files)
        assert reg.fetch(version).is_dir()


def test_pickled_models_and_unknown_names(mlflow_uri: str, logger: Logger, tmp_path: Path) -> None:
    name = f"pickled{uuid.uuid4().hex[:6]}"
    version = logger.register(name, "cloudpickle")
    source = MlflowSource(mlflow_uri)
    with Registry(tmp_path / "reg") as reg:
        with pytest.raises(UnsafeArtifactError, match="allow_pickle"):
            import_version(reg, source, f"models:/{name}/{version}")
        with pytest.raises(ModelNotFoundError):
            reg.list_versions(name)
        imported = import_version(reg, source, f"models:/{name}/{version}", allow_pickle=True)
        assert imported.version.manifest.runtime == "sklearn"
        with pytest.raises(ModelNotFoundError, match="MLflow has no"):
            import_version(reg, source, f"models:/{name}/{version + 5}")
        with pytest.raises(ModelNotFoundError, match="MLflow has no"):
            sync_alias(reg, source, f"models:/{name}@nosuchalias")


def test_cli_import_sync_and_watch(mlflow_uri: str, logger: Logger, tmp_path: Path) -> None:
    name = f"cli{uuid.uuid4().hex[:6]}"
    v1 = logger.register(name, "onnx", seed=0)
    v2 = logger.register(name, "onnx", seed=1)
    logger.alias(name, "champion", v1)
    registry = str(tmp_path / "reg")
    runner = CliRunner()
    common = ["--tracking-uri", mlflow_uri, "--registry", registry]

    out = runner.invoke(
        main, ["mlflow", "import", f"models:/{name}/{v2}", "--name", "flowers", *common]
    )
    assert out.exit_code == 0, out.output
    assert f"imported models:/{name}/{v2} as flowers:1" in out.output
    assert "Downloading artifacts" not in out.output  # no progress bar: stderr is no terminal

    out = runner.invoke(
        main, ["mlflow", "sync", f"models:/{name}@champion", "--name", "flowers", *common]
    )
    assert out.exit_code == 0, out.output
    assert "flowers@production -> version 2" in out.output  # v1 was not imported before

    out = runner.invoke(main, ["mlflow", "sync", f"models:/{name}@missing", *common])
    assert out.exit_code == 1
    assert "MLflow has no" in out.output

    # --watch: a promotion in MLflow between two rounds moves the alias at the next round.
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        logger.alias(name, "champion", v2)

    with Registry(registry) as reg:
        follow(
            reg,
            MlflowSource(mlflow_uri),
            f"models:/{name}@champion",
            "flowers",
            "production",
            False,
            every_s=5.0,
            sleep=sleep,
            rounds=2,
        )
        assert sleeps == [5.0]
        assert reg.aliases("flowers")["production"] == 1  # flowers:1 is MLflow's version 2


def test_a_server_follows_a_promotion_in_mlflow(
    mlflow_uri: str, logger: Logger, tmp_path: Path
) -> None:
    """The whole story: `modelyard mlflow follow`, a server whose controller syncs the follow,
    and a data scientist promoting a new version in MLflow: the server answers from it by
    itself, and the response names the version."""
    import httpx

    from tests.serverproc import start_server

    name = f"served{uuid.uuid4().hex[:6]}"
    v1 = logger.register(name, "onnx", seed=0)
    logger.alias(name, "champion", v1)
    registry = tmp_path / "reg"
    out = CliRunner().invoke(
        main,
        [
            "mlflow",
            "follow",
            f"models:/{name}@champion",
            "--name",
            "iris",
            "--registry",
            str(registry),
        ],
        env={"MODELYARD_MLFLOW_TRACKING_URI": mlflow_uri},
    )
    assert out.exit_code == 0, out.output
    assert f"iris@production follows models:/{name}@champion ({mlflow_uri})" in out.output
    env = {  # no MODELYARD_MLFLOW_TRACKING_URI: the follow record names its tracking server
        "MODELYARD_MLFLOW_SYNC_INTERVAL_S": "0.5",
        "MODELYARD_CONTROLLER_INTERVAL_S": "0.5",
        "MODELYARD_WATCH_INTERVAL_S": "0.5",
    }
    server = start_server(registry, env=env)
    body = {
        "inputs": [
            {"name": "X", "shape": [3, 4], "datatype": "FP32", "data": X[:3].ravel().tolist()}
        ]
    }
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:

            def served_version() -> str | None:
                resp = client.post("/v2/models/iris/infer", json=body)
                return str(resp.json()["model_version"]) if resp.status_code == 200 else None

            server.wait_for(lambda: served_version() == "1", timeout=60)
            v2 = logger.register(name, "onnx", seed=1)
            logger.alias(name, "champion", v2)  # promoted in MLflow
            server.wait_for(lambda: served_version() == "2", timeout=60)
            resp = client.post("/v2/models/iris/infer", json=body)
            labels = next(o for o in resp.json()["outputs"] if o["name"] == "label")["data"]
            assert labels == [0, 2, 1]
    finally:
        assert server.terminate() == 0
    assert "mlflow follow: iris@production -> version 2" in server.log()
