"""The batch job: parts, outputs with keys, resumption without loss or duplicates, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelyard.core.clock import FakeClock
from modelyard.errors import FailedPreconditionError, InvalidInputError, NotFoundError
from modelyard.jobs.batch import BatchJob, run_batch
from modelyard.jobs.batch_io import Part
from modelyard.jobs.manifest import MANIFEST_NAME
from tests.unit.jobs.conftest import FakeScorer, expected_output, feature_table, write_parquet


def read_output(directory: Path, fmt: str = "parquet") -> pa.Table:
    return ds.dataset(directory, format=fmt).to_table()


def manifest(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((directory / MANIFEST_NAME).read_bytes())
    return doc


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Two Parquet files, 250 + 130 rows, row groups of 50, plus a file readers skip."""
    root = tmp_path / "in"
    write_parquet(root / "a.parquet", 250, row_group_rows=50)
    write_parquet(root / "sub" / "b.parquet", 130, start=250, row_group_rows=50)
    (root / "_SUCCESS").write_text("")
    return root


def job(inputs: Path, out: Path, **kwargs: Any) -> BatchJob:
    return BatchJob(input=str(inputs), output=str(out), **{"part_rows": 100, **kwargs})


def test_scores_every_row_once_with_keys(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    scorer = FakeScorer()
    result = run_batch(job(inputs, out, keys=("id",), batch_rows=40), scorer, clock=FakeClock())
    # a.parquet: row groups 0-1, 2-3, 4; b.parquet: 0-1, 2 -> 5 parts
    assert (result.parts, result.parts_skipped, result.rows_scored) == (5, 0, 380)
    table = read_output(out).sort_by("id")
    assert table.column_names == ["id", "output"]
    ids = table.column("id").to_numpy()
    np.testing.assert_array_equal(ids, np.arange(380))
    np.testing.assert_allclose(table.column("output").to_numpy(), expected_output(ids), rtol=1e-6)
    doc = manifest(out)
    assert doc["state"] == "done" and (doc["model"], doc["version"]) == ("linear", 1)
    assert sorted(doc["parts"]) == [f"part-{i:05d}" for i in range(5)]
    assert doc["parts"]["part-00004"]["input"] == "sub/b.parquet (row groups 2-2)"
    assert sum(p["rows"] for p in doc["parts"].values()) == 380


def test_without_keys_rows_are_identified_by_source_and_row(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(job(inputs, out), FakeScorer())
    table = read_output(out)
    assert table.column_names == ["_source", "_row", "output"]
    rows = table.to_pydict()
    pairs = set(zip([str(s) for s in rows["_source"]], rows["_row"], strict=True))
    assert len(pairs) == 380
    assert ("sub/b.parquet", 129) in pairs and ("a.parquet", 249) in pairs


def test_rerun_of_a_finished_job_scores_nothing(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(job(inputs, out, keys=("id",)), FakeScorer())
    again = FakeScorer()
    result = run_batch(job(inputs, out, keys=("id",)), again)
    assert (result.parts_skipped, result.rows_scored, result.rows_total) == (5, 0, 380)
    assert again.calls == 0


def test_failure_mid_job_resumes_without_loss_or_duplicates(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # batch_rows 50: parts 0, 1 (100 rows) take 2 calls each, part 2 (50 rows) one; call 7 is
    # the second batch of part 3, after its first batch was written to a temporary file.
    with pytest.raises(RuntimeError, match="on purpose"):
        run_batch(job(inputs, out, keys=("id",), batch_rows=50), FakeScorer(fail_on_call=7))
    assert sorted(manifest(out)["parts"]) == ["part-00000", "part-00001", "part-00002"]
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST_NAME,
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]  # the half-written part-00003 was never published
    rerun = FakeScorer()
    result = run_batch(job(inputs, out, keys=("id",), batch_rows=50), rerun)
    assert result.parts_skipped == 3 and rerun.rows == 380 - 250
    ids = read_output(out).column("id").to_numpy()
    assert len(ids) == 380 and set(ids.tolist()) == set(range(380))


def test_part_published_but_not_recorded_is_redone_in_place(inputs: Path, tmp_path: Path) -> None:
    """A crash between publishing a part and recording it: the rerun overwrites that file."""
    out = tmp_path / "out"
    run_batch(job(inputs, out, keys=("id",)), FakeScorer())
    doc = manifest(out)
    del doc["parts"]["part-00003"]
    doc["state"] = "running"
    (out / MANIFEST_NAME).write_bytes(orjson.dumps(doc))
    (out / ".part-00004.parquet.tmp-deadbeef").write_bytes(b"half a file")
    result = run_batch(job(inputs, out, keys=("id",)), FakeScorer())
    assert result.parts_skipped == 4 and result.rows_scored == 100
    ids = read_output(out).column("id").to_numpy()
    assert len(ids) == 380 and len(set(ids.tolist())) == 380
    assert not list(out.glob(".*tmp-*"))


def test_rerun_with_another_version_is_refused(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(job(inputs, out, keys=("id",)), FakeScorer(version=1))
    with pytest.raises(
        FailedPreconditionError, match="scored by linear:1, the model now resolves to linear:2"
    ):
        run_batch(job(inputs, out, keys=("id",)), FakeScorer(version=2))
    result = run_batch(job(inputs, out, keys=("id",), restart=True), FakeScorer(version=2))
    assert result.parts_skipped == 0 and result.rows_total == 380
    assert manifest(out)["version"] == 2


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"part_rows": 1000}, "--part-rows"),
        ({"keys": ()}, "the columns or outputs"),
        ({"output_format": "csv"}, "the output format"),
    ],
)
def test_rerun_of_a_different_job_is_refused(
    inputs: Path, tmp_path: Path, change: dict[str, Any], what: str
) -> None:
    out = tmp_path / "out"
    run_batch(job(inputs, out, keys=("id",)), FakeScorer())
    with pytest.raises(FailedPreconditionError, match=f"{what} changed"):
        run_batch(job(inputs, out, **{"keys": ("id",), **change}), FakeScorer())


def test_changed_input_is_refused(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch(job(inputs, out, keys=("id",)), FakeScorer())
    write_parquet(inputs / "a.parquet", 251, row_group_rows=50)
    with pytest.raises(FailedPreconditionError, match="the input files changed"):
        run_batch(job(inputs, out, keys=("id",)), FakeScorer())


def test_non_empty_output_without_manifest_is_refused(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="is not empty and holds no job manifest"):
        run_batch(job(inputs, out), FakeScorer())


def test_csv_in_csv_out(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    pacsv.write_csv(feature_table(70), src)
    out = tmp_path / "out"
    result = run_batch(
        BatchJob(input=str(src), output=str(out), keys=("id",), output_format="csv", batch_rows=32),
        FakeScorer(),
    )
    assert result.parts == 1 and result.rows_total == 70
    table = pacsv.read_csv(out / "part-00000.csv")
    np.testing.assert_array_equal(table.column("id").to_numpy(), np.arange(70))


def test_missing_input_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        run_batch(job(tmp_path / "nope", tmp_path / "out"), FakeScorer())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"holds no \.parquet or \.csv files"):
        run_batch(job(tmp_path / "empty", tmp_path / "out"), FakeScorer())


def test_mistyped_column_fails_before_scoring(tmp_path: Path) -> None:
    table = feature_table(10).set_column(3, "f2", pa.array([str(i) for i in range(10)]))
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    scorer = FakeScorer()
    scorer.feature_names = {"input": [f"f{j}" for j in range(20)]}
    with pytest.raises(InvalidInputError, match=r"column 'f2' in in\.parquet is string"):
        run_batch(job(src, tmp_path / "out", keys=("id",)), scorer)
    assert scorer.calls == 0


class RecordingProgress:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def start(self, total_rows: int | None, done_rows: int, parts: int, parts_done: int) -> None:
        self.events.append(("start", total_rows, done_rows, parts, parts_done))

    def advance(self, rows: int) -> None:
        self.events.append(("advance", rows))

    def part_done(self, part: Part, rows: int) -> None:
        self.events.append(("part", part.name, rows))

    def finish(self) -> None:
        self.events.append(("finish",))


def test_progress_reports_rows_and_parts(inputs: Path, tmp_path: Path) -> None:
    progress = RecordingProgress()
    run_batch(job(inputs, tmp_path / "out", batch_rows=64), FakeScorer(), progress=progress)
    assert progress.events[0] == ("start", 380, 0, 5, 0)
    assert progress.events[-1] == ("finish",)
    assert sum(e[1] for e in progress.events if e[0] == "advance") == 380
    assert [e[1] for e in progress.events if e[0] == "part"] == [f"part-{i:05d}" for i in range(5)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_rows": 0}, "--batch-rows must be a whole number >= 1"),
        ({"part_rows": -1}, "--part-rows must be"),
        ({"output_format": "xlsx"}, "--output-format must be parquet or csv"),
    ],
)
def test_bad_job_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        BatchJob(input="in", output="out", **kwargs)
