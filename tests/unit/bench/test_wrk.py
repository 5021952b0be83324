import math
import re

import pytest

from modelyard.bench.wrk import (
    JSON_MARKER,
    lua_quote,
    lua_script,
    lua_string,
    parse_count,
    parse_time,
    parse_wrk_output,
)
from modelyard.errors import InvalidInputError

# Captured from `wrk -t1 -c64 -d2s --latency` (wrk 4.1.0, Debian) against nginx.
SUMMARY = """\
Running 2s test @ http://127.0.0.1:18200/v2/models/x/infer
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms    1.72ms  20.28ms   89.56%
    Req/Sec   108.72k    41.80k  179.83k    65.00%
  Latency Distribution
     50%  317.00us
     75%  810.00us
     90%    2.86ms
     99%    8.47ms
  216349 requests in 2.00s, 33.01MB read
Requests/sec: 107963.43
Transfer/sec:     16.47MB
"""
JSON_LINE = (
    'WRK_JSON {"requests":216349,"duration_us":2003910,"bytes":34615840,"connect":0,"read":0,'
    '"write":0,"status":0,"timeout":0,"p50_us":317,"p90_us":2859,"p99_us":8472,'
    '"max_us":20277,"mean_us":1016.119}'
)


def test_parse_summary_text() -> None:
    stats = parse_wrk_output(SUMMARY)
    assert stats.requests == 216349
    assert stats.duration_s == 2.0
    assert stats.errors == 0
    assert stats.p50_s == pytest.approx(317e-6)
    assert stats.p90_s == pytest.approx(2.86e-3)
    assert stats.p99_s == pytest.approx(8.47e-3)
    assert stats.mean_s == pytest.approx(1.02e-3)
    assert stats.max_s == pytest.approx(20.28e-3)


def test_parse_prefers_the_exact_json_line() -> None:
    stats = parse_wrk_output(SUMMARY + JSON_LINE + "\n")
    assert stats.duration_s == pytest.approx(2.00391)
    assert stats.p90_s == pytest.approx(2859e-6)
    assert stats.rps == pytest.approx(216349 / 2.00391)


def test_errors_add_socket_errors_and_non_2xx() -> None:
    text = SUMMARY.replace(
        "Requests/sec:",
        "  Socket errors: connect 1, read 2, write 3, timeout 4\n"
        "  Non-2xx or 3xx responses: 10\nRequests/sec:",
    )
    assert parse_wrk_output(text).errors == 20
    line = JSON_LINE.replace('"read":0', '"read":2').replace('"status":0', '"status":7')
    assert parse_wrk_output(line).errors == 9


def test_summary_without_latency_flag_has_nan_percentiles() -> None:
    text = re.sub(r"  Latency Distribution\n(     \d+%.*\n)+", "", SUMMARY)
    stats = parse_wrk_output(text)
    assert stats.requests == 216349
    assert math.isnan(stats.p99_s)
    assert stats.mean_s == pytest.approx(1.02e-3)


def test_json_line_with_no_requests_has_nan_latency() -> None:
    line = JSON_LINE.replace('"requests":216349', '"requests":0')
    stats = parse_wrk_output(line)
    assert stats.requests == 0
    assert math.isnan(stats.p50_s)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("unable to connect to 127.0.0.1:1 Connection refused\n", "no 'N requests in T' line"),
        (JSON_MARKER + "{not json", "malformed WRK_JSON"),
        (JSON_MARKER + '{"requests": 1}', "malformed WRK_JSON"),
        (SUMMARY.replace("317.00us", "317.00xs"), "cannot read time"),
    ],
)
def test_unreadable_output_names_the_problem(text: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        parse_wrk_output(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("912.00us", 912e-6), ("1.23ms", 1.23e-3), ("2.00s", 2.0), ("1.00m", 60.0), ("2h", 7200.0)],
)
def test_parse_time_units(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "value"), [("812", 812), ("52.31k", 52310), ("1.20M", 1.2e6), ("3G", 3e9)]
)
def test_parse_count_units(text: str, value: float) -> None:
    assert parse_count(text) == pytest.approx(value)


def test_parse_count_rejects_junk() -> None:
    with pytest.raises(InvalidInputError, match="cannot read count"):
        parse_count("lots")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a":[1]}', '[[{"a":[1]}]]'),
        ("x]]y", "[=[x]]y]=]"),
        ("ends with ]", "[=[ends with ]]=]"),
        ("]=] and ]]", "[==[]=] and ]]]==]"),
        ("\nlead", "[[\n\nlead]]"),
    ],
)
def test_lua_long_string_cannot_be_closed_early(text: str, expected: str) -> None:
    assert lua_string(text) == expected


def test_lua_quote_escapes() -> None:
    assert lua_quote('a"b\\c\n') == '"a\\"b\\\\c\\n"'


def test_lua_script_posts_the_body_and_reports_json() -> None:
    script = lua_script(b'{"inputs":[]}', {"X-Key": "k"})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = [[{"inputs":[]}]]' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert 'wrk.headers["X-Key"] = "k"' in script
    assert JSON_MARKER in script
    assert "latency:percentile(99)" in script


def test_lua_script_rejects_non_utf8_body() -> None:
    with pytest.raises(InvalidInputError, match="UTF-8"):
        lua_script(b"\xff\xfe")
