import math

import pytest

from modelyard.bench.report import (
    PointResult,
    append_under_heading,
    fmt_ms,
    fmt_ratio,
    fmt_rps,
    markdown_table,
    ratio_rows,
    replace_section,
    row_cells,
)
from modelyard.bench.stats import NAN, RunStats
from modelyard.errors import InvalidInputError


def run(rps: float, p50_ms: float, p99_ms: float, errors: int = 0) -> RunStats:
    requests = round(rps * 10)
    return RunStats(requests, errors, 10.0, p50_ms / 1e3, NAN, p99_ms / 1e3, NAN, NAN)


MY = PointResult("modelyard", 64, (run(5000, 2, 20), run(4000, 3, 30), run(6000, 1, 10)))
PEER = PointResult("peer", 64, (run(200, 100, 450, errors=2), run(210, 90, 400), run(190, 95, 500)))
SKIPPED = PointResult("gone", 64, note="not installed: no wheel")


def test_point_summarises_runs_by_median_and_sums_errors() -> None:
    assert MY.median_rps == 5000
    assert MY.median_p50_s == pytest.approx(0.002)
    assert MY.median_p99_s == pytest.approx(0.020)
    assert PEER.errors == 2
    assert PEER.requests == 6000


def test_ratio_rows_compare_with_the_reference() -> None:
    rows = ratio_rows([MY, PEER, SKIPPED], "modelyard")
    assert [r.system for r in rows] == ["modelyard", "peer", "gone"]
    assert rows[0].rps_ratio == 1.0
    assert rows[1].rps_ratio == pytest.approx(200 / 5000)
    assert rows[1].p99_ratio == pytest.approx(450 / 20)
    assert rows[1].p50_ms == pytest.approx(95)
    assert math.isnan(rows[2].rps) and math.isnan(rows[2].rps_ratio)
    assert rows[2].note == "not installed: no wheel"


def test_ratios_are_nan_when_the_reference_has_no_runs() -> None:
    rows = ratio_rows([SKIPPED, PEER], "gone")
    assert math.isnan(rows[1].rps_ratio)


def test_unknown_reference_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="reference system 'x'"):
        ratio_rows([MY], "x")


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (fmt_rps, 5123.4, "5,123"),
        (fmt_rps, NAN, "-"),
        (fmt_ms, 0.09123, "0.0912"),
        (fmt_ms, 45.67, "45.7"),
        (fmt_ms, 1234.5, "1,234"),
        (fmt_ms, NAN, "-"),
        (fmt_ratio, 0.04, "0.04x"),
        (fmt_ratio, 0.0036, "0.0036x"),
        (fmt_ratio, 0.5, "0.50x"),
        (fmt_ratio, 13.2, "13.2x"),
        (fmt_ratio, 150.4, "150x"),
        (fmt_ratio, NAN, "-"),
    ],
)
def test_number_formats(fn: object, value: float, text: str) -> None:
    assert callable(fn)
    assert fn(value) == text


def test_row_cells_show_error_share_and_notes() -> None:
    rows = ratio_rows([MY, PEER, SKIPPED], "modelyard")
    assert row_cells(rows[0])[4] == "0"
    assert row_cells(rows[1])[4] == "2 (0.0%)"
    assert row_cells(rows[2])[0] == "gone (not installed: no wheel)"
    assert row_cells(rows[2])[4] == "-"


def test_markdown_table() -> None:
    table = markdown_table(ratio_rows([MY, PEER], "modelyard"), "modelyard")
    lines = table.splitlines()
    assert lines[0] == (
        "| system | median req/s | p50 ms | p99 ms | errors | req/s vs modelyard | "
        "p99 vs modelyard |"
    )
    assert lines[1] == "|:---|---:|---:|---:|---:|---:|---:|"
    assert lines[2] == "| modelyard | 5,000 | 2 | 20 | 0 | 1.00x | 1.00x |"
    assert lines[3] == "| peer | 200 | 95 | 450 | 2 (0.0%) | 0.04x | 22.5x |"


def test_markdown_escapes_pipes_in_notes() -> None:
    point = PointResult("odd", 64, note="failed: a | b")
    assert "failed: a \\| b" in markdown_table(ratio_rows([point], "odd"), "odd")


def test_point_as_dict_is_json_ready() -> None:
    data = SKIPPED.as_dict()
    assert data["median_rps"] is None
    assert data["runs"] == []
    runs = MY.as_dict()["runs"]
    assert isinstance(runs, list)
    assert runs[0]["p90_s"] is None  # NaN -> None


PREAMBLE = "# Benchmarks\n\nHow we measure.\n\n## Peer runs\n"
RUN1 = "### run 1\n\n| a |\n"
RUN2 = "### run 2\n\n| b |\n"


def test_append_to_an_empty_document_writes_the_preamble_first() -> None:
    doc = append_under_heading("", "## Peer runs", RUN1, preamble=PREAMBLE)
    assert doc == PREAMBLE + "\n" + RUN1


def test_append_keeps_runs_in_order_and_other_sections_after_them() -> None:
    other = "## Text embedding\n\nanother benchmark's numbers\n"
    doc = append_under_heading(
        PREAMBLE + "\n" + RUN1 + "\n" + other, "## Peer runs", RUN2, preamble=PREAMBLE
    )
    assert doc == PREAMBLE + "\n" + RUN1 + "\n" + RUN2 + "\n" + other


def test_append_to_a_document_written_by_someone_else_keeps_their_section() -> None:
    other = "## Text embedding\n\nnumbers\n"
    doc = append_under_heading(other, "## Peer runs", RUN1, preamble=PREAMBLE)
    assert doc == PREAMBLE + "\n" + RUN1 + "\n" + other
    titled = append_under_heading(
        "# Old title\n\n" + other, "## Peer runs", RUN1, preamble=PREAMBLE
    )
    assert titled == doc  # one title only


def test_preamble_must_hold_the_heading() -> None:
    with pytest.raises(InvalidInputError, match="preamble must contain"):
        append_under_heading("", "## Runs", RUN1, preamble="# Title\n")


BATCH_OLD = "## Batch\n\nold numbers\n"
BATCH_NEW = "## Batch\n\nnew numbers\n"


def test_replace_section_in_an_empty_document_is_the_section() -> None:
    assert replace_section("", "## Batch", BATCH_NEW) == BATCH_NEW


def test_replace_section_appends_when_missing() -> None:
    doc = "# Benchmarks\n\n## Streams\n\nnumbers\n"
    assert replace_section(doc, "## Batch", BATCH_NEW) == doc + "\n" + BATCH_NEW


def test_replace_section_keeps_the_sections_around_it() -> None:
    before, after = "# Benchmarks\n\n## Streams\n\ns\n\n", "\n## Text embedding\n\ne\n"
    doc = replace_section(before + BATCH_OLD + after, "## Batch", BATCH_NEW)
    assert doc == before + BATCH_NEW + after
    assert replace_section(before + BATCH_OLD, "## Batch", BATCH_NEW) == before + BATCH_NEW


def test_replace_section_matches_the_whole_heading_only() -> None:
    doc = "## Batch scoring\n\nsomeone else's\n"
    assert replace_section(doc, "## Batch", BATCH_NEW) == doc + "\n" + BATCH_NEW
