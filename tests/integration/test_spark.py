"""The Spark integration in ``local[2]``: same predictions as in-process, one load per Python
worker, and column errors raised on the driver before any task runs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import modelyard
from modelyard.errors import InvalidInputError
from modelyard.registry.registry import Registry
from modelyard.runtimes.python import PythonModel
from modelyard.types import Array, Datatype, Signature, TensorSpec
from tests.integration.conftest import service_missing
from tests.serverproc import ROOT
from tests.testmodels import linear_fp32_model
from tests.unit.jobs.conftest import feature_table

pytestmark = pytest.mark.integration

LOADS_CONFIG = "loads.json"


class CountingDouble(PythonModel):
    """x FP64 [-1] -> y = 2x; every load leaves a file named after the loading process."""

    signature: ClassVar[Signature | None] = Signature(
        inputs=(TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1,)),),
        outputs=(TensorSpec(name="y", datatype=Datatype.FP64, shape=(-1,)),),
    )

    def __init__(self, loads: Path | None = None) -> None:
        self.loads = loads

    def save(self, directory: Path) -> None:
        (directory / LOADS_CONFIG).write_text(json.dumps({"loads": str(self.loads)}))

    def load(self, path: Path) -> None:
        loads = Path(json.loads(next(path.rglob(LOADS_CONFIG)).read_text())["loads"])
        (loads / f"{os.getpid()}-{uuid.uuid4().hex}").touch()

    def predict(self, inputs: dict[str, Array]) -> dict[str, Array]:
        return {"y": np.asarray(inputs["x"], dtype=np.float64) * 2}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        service_missing("pyspark is not installed (pip install 'modelyard[spark]')")
    if shutil.which("java") is None:
        service_missing("Spark needs a Java runtime (java 17) on PATH")
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYTHONPATH")}
    # Workers run this interpreter and import the test models from the repository root.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), saved["PYTHONPATH"]]))
    session = (
        SparkSession.builder.master("local[2]")
        .appName("modelyard-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("spark")
    root, loads = tmp / "registry", tmp / "loads"
    loads.mkdir()
    with Registry(root) as reg:
        reg.push(linear_fp32_model(tmp / "linear.onnx"), name="linear", alias="production")
        reg.push(CountingDouble(loads), name="double")
    yield str(root), loads


def test_spark_scores_like_in_process(spark: Any, registry: tuple[str, Path]) -> None:
    from modelyard.jobs.spark import score_dataframe

    root, _ = registry
    table = feature_table(1000)
    df = spark.createDataFrame(table.to_pandas()).repartition(4)
    scored = score_dataframe(df, "linear@production", keep=["id"], registry=root)
    assert scored.columns == ["id", "output"]
    rows = scored.toPandas().sort_values("id")
    np.testing.assert_array_equal(rows["id"].to_numpy(), np.arange(1000))
    features = np.stack([table.column(f"f{j}").to_numpy() for j in range(20)], axis=1)
    with modelyard.load("linear@production", registry=root) as predictor:
        expected = predictor.predict(features)["output"].reshape(-1)
    np.testing.assert_array_equal(rows["output"].to_numpy(), expected)


def test_each_python_worker_loads_the_version_once(spark: Any, registry: tuple[str, Path]) -> None:
    from modelyard.jobs.spark import score_dataframe

    root, loads = registry
    df = spark.range(0, 4000, numPartitions=8).selectExpr("id", "cast(id as double) as x")
    scored = score_dataframe(df, "double", registry=root)
    total = scored.selectExpr("sum(y) as s", "count(*) as n").collect()[0]
    assert (total["n"], total["s"]) == (4000, 2.0 * sum(range(4000)))
    pids = [name.split("-")[0] for name in os.listdir(loads)]
    assert pids and len(pids) == len(set(pids))  # no worker loaded it twice
    assert len(pids) < 8  # fewer loads than tasks: workers kept the model between tasks


def test_column_errors_are_raised_on_the_driver(spark: Any, registry: tuple[str, Path]) -> None:
    from modelyard.jobs.spark import score_dataframe

    root, _ = registry
    df = spark.range(0, 10).selectExpr("id", "cast(id as string) as x")
    with pytest.raises(InvalidInputError, match="column 'x' in the data frame is string"):
        score_dataframe(df, "double", registry=root)
