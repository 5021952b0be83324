from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from modelyard.bench.cli import bench_command, read_input, summary_table
from modelyard.bench.loadtest import LoadTestResult
from modelyard.bench.stats import summarize
from modelyard.errors import InvalidInputError

BODY = '{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[1]}]}'


def test_read_input_accepts_text_and_files(tmp_path: Path) -> None:
    assert read_input(BODY) == BODY.encode()
    path = tmp_path / "body.json"
    path.write_text(BODY)
    assert read_input(f"@{path}") == BODY.encode()


@pytest.mark.parametrize(
    ("value", "match"),
    [("@/nonexistent/body.json", "--input @/nonexistent"), ("{", "--input: payload is not valid")],
)
def test_read_input_errors_name_the_option(value: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        read_input(value)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["localhost:8080", "-m", "m", "--input", BODY], "url must look like"),
        (["http://h:1", "-m", "a/b", "--input", BODY], "model must be"),
        (["http://h:1", "-m", "m", "--input", "[1]"], "--input: payload must be a V2 request"),
    ],
)
def test_bad_arguments_fail_before_any_network(args: list[str], match: str) -> None:
    result = CliRunner().invoke(bench_command, args)
    assert isinstance(result.exception, InvalidInputError)
    assert match in result.exception.message


def test_click_validates_ranges() -> None:
    result = CliRunner().invoke(bench_command, ["http://h:1", "-m", "m", "-c", "0"])
    assert result.exit_code == 2
    assert "--concurrency" in result.output


def test_summary_table_shows_throughput_percentiles_and_first_error() -> None:
    result = LoadTestResult(
        url="http://h:1",
        model="m",
        concurrency=4,
        stats=summarize([0.001, 0.002, 0.003, 0.004], errors=1, duration_s=2.0),
        status_counts={200: 3, 500: 1},
        transport_errors=0,
        first_error="HTTP 500: boom",
    )
    console = Console(record=True, width=120)
    console.print(summary_table(result))
    text = console.export_text()
    assert "m @ http://h:1" in text
    assert "4 connections, 2.0 s" in text
    assert "200: 3, 500: 1" in text
    assert "throughput (req/s)" in text and " 2 " in text
    assert "latency p99 (ms)" in text and "3.97" in text
    assert "HTTP 500: boom" in text
