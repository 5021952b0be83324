"""``modelyard materialize``: inputs (Parquet, CSV, JSON), version stamps, idempotent upserts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from modelyard.cli import main
from modelyard.errors import InvalidInputError
from modelyard.jobs.materialize import MaterializeJob, materialize
from modelyard.jobs.scoring import LocalScorer
from modelyard.registry.registry import Registry
from modelyard.registry.store import Store
from modelyard.traffic.materialized import db_store
from tests.unit.jobs.materializekit import features, push_linear, rows, run_job, settings_for


@pytest.fixture
def registry_dir(tmp_path: Path) -> str:
    with Registry(tmp_path / "registry") as registry:
        push_linear(registry, tmp_path)
    return str(tmp_path / "registry")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return db_store(str(tmp_path / "predictions.db"))


def table_rows(store: Store, table: str = "scores") -> dict[str, tuple[object, ...]]:
    with store.transaction(write=False) as tx:
        found = tx.execute(f"SELECT row_key, model, version, outputs, updated_at FROM {table}")
    return {str(r[0]): tuple(r[1:]) for r in found.rows}


def run(registry_dir: str, store: Store, job: MaterializeJob) -> int:
    scorer = LocalScorer(settings_for(registry_dir), "linear", "production")
    try:
        return materialize(job, scorer, store).rows
    finally:
        scorer.close()


def test_rows_are_stamped_with_model_and_version(registry_dir: str, store: Store) -> None:
    result = run_job(settings_for(registry_dir), store, "scores", range(3))
    assert result.rows == 3 and result.db.startswith("sqlite:///")
    found = table_rows(store)
    assert sorted(found) == ["0", "1", "2"]
    model, version, outputs, _ = found["2"]
    assert (model, version) == ("linear", 1)
    doc = orjson.loads(str(outputs))
    assert doc["output"]["datatype"] == "FP32" and doc["output"]["shape"] == [1]
    assert doc["output"]["data"] == pytest.approx([sum(features(2))])


def test_a_rerun_upserts_and_restamps(registry_dir: str, store: Store, tmp_path: Path) -> None:
    settings = settings_for(registry_dir)
    run_job(settings, store, "scores", range(4))
    run_job(settings, store, "scores", range(2, 6))  # overlapping keys: replaced, not added
    found = table_rows(store)
    assert sorted(found, key=int) == ["0", "1", "2", "3", "4", "5"]
    with Registry(registry_dir) as registry:
        push_linear(registry, tmp_path)
    run_job(settings, store, "scores", range(6))
    assert {row[1] for row in table_rows(store).values()} == {2}


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json-file"])
def test_file_inputs(fmt: str, registry_dir: str, store: Store, tmp_path: Path) -> None:
    table = pa.Table.from_pylist(rows(range(20)))
    path = tmp_path / f"keys.{fmt.split('-')[0]}"
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=7)
    elif fmt == "csv":
        pacsv.write_csv(table, path)
    else:
        path.write_bytes(orjson.dumps(rows(range(20))))
    job = MaterializeJob(input=str(path), table="scores", batch_rows=6)
    assert run(registry_dir, store, job) == 20
    assert len(table_rows(store)) == 20


def test_an_explicit_key_and_feature_columns(registry_dir: str, store: Store) -> None:
    docs = [{"sku": f"s{i}", "noise": 1.0, **{f"f{j}": 1.0 for j in range(4)}} for i in range(3)]
    job = MaterializeJob(
        input=orjson.dumps(docs).decode(),
        table="scores",
        key="sku",
        columns={"": ("f0", "f1", "f2", "f3")},
    )
    assert run(registry_dir, store, job) == 3
    outputs = orjson.loads(str(table_rows(store)["s1"][2]))
    assert outputs["output"]["data"] == [4.0]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1, 2]", "list of row objects"),
        ("[]", "list of row objects"),
        ("[{", "not valid JSON"),
        ('[{"f0": 1}]', "'id'"),  # no key column
        ('[{"id": 1, "f0": "a", "f1": 1, "f2": 1, "f3": 1}]', "--input has 3 numeric"),
    ],
)
def test_bad_inputs_name_the_problem(
    text: str, match: str, registry_dir: str, store: Store
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        run(registry_dir, store, MaterializeJob(input=text, table="scores"))


@pytest.mark.parametrize("table", ["1abc", "a b", "x;drop", ""])
def test_table_names_are_plain_identifiers(table: str) -> None:
    with pytest.raises(InvalidInputError, match="table"):
        MaterializeJob(input="[]", table=table)


def test_the_command_writes_into_the_registry_database(registry_dir: str) -> None:
    result = CliRunner().invoke(
        main,
        [
            *("materialize", "linear@production", "--table", "scores"),
            *("--input", orjson.dumps(rows(range(5))).decode(), "--registry", registry_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "linear:1: 5 rows upserted into scores" in result.output
    with Registry(registry_dir) as registry:
        assert len(table_rows(registry.store)) == 5


def test_the_command_reports_bad_flags_in_one_line(registry_dir: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    result = CliRunner().invoke(
        main,
        [
            *("materialize", "linear", "--table", "scores", "--db", db),
            *("--input", str(tmp_path / "missing.parquet"), "--registry", registry_dir),
        ],
    )
    assert result.exit_code == 1 and "does not exist" in result.output
