"""Drive ``wrk``: render its Lua script for a POST body and parse what it prints.

The Lua script's ``done()`` hook prints one machine-readable line (``WRK_JSON {...}``) with exact
microsecond percentiles; :func:`parse_wrk_output` prefers it and falls back to wrk's human summary
(``--latency`` needed for percentiles), so output captured from a plain wrk run parses too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import orjson

from modelyard.bench.stats import NAN, RunStats
from modelyard.errors import InvalidInputError

JSON_MARKER = "WRK_JSON "

_DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.3f}\\n',
    "{marker}", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_COUNT_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_TIME_RE = re.compile(r"^([0-9]*\.?[0-9]+)(us|ms|s|m|h)$")
_COUNT_RE = re.compile(r"^([0-9]*\.?[0-9]+)([kMGT]?)$")
_REQUESTS_RE = re.compile(r"^\s*(\d+) requests in (\S+), ")
_PCT_RE = re.compile(r"^\s*(50|90|99)(?:\.0+)?%\s+(\S+)\s*$")
_LATENCY_RE = re.compile(r"^\s*Latency\s+(\S+)\s+\S+\s+(\S+)\s")
_SOCKET_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def lua_string(text: str) -> str:
    """``text`` as a Lua long-bracket literal, with a level no line of it can close."""
    level = 0
    # The closing bracket must not appear earlier, not even straddling the text's last chars.
    while (text + f"]{'=' * level}]").find(f"]{'=' * level}]") != len(text):
        level += 1
    eq = "=" * level
    # Lua drops a newline right after the opening bracket; a leading one must survive.
    lead = "\n" if text.startswith("\n") else ""
    return f"[{eq}[{lead}{text}]{eq}]"


def lua_quote(text: str) -> str:
    """``text`` as a short double-quoted Lua literal (for header names and values)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def done_hook() -> str:
    """The Lua ``done()`` hook that prints the run's summary as one :data:`JSON_MARKER` line;
    append it to any wrk script whose output :func:`parse_wrk_output` reads."""
    return _DONE_HOOK.replace("{marker}", JSON_MARKER)


def lua_script(body: bytes, headers: Mapping[str, str] | None = None) -> str:
    """A wrk script that POSTs ``body`` on every request and reports via :data:`JSON_MARKER`."""
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInputError("wrk body must be UTF-8 text (a V2 JSON request)") from exc
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    lines = ['wrk.method = "POST"', f"wrk.body = {lua_string(text)}"]
    for name, value in all_headers.items():
        lines.append(f"wrk.headers[{lua_quote(name)}] = {lua_quote(value)}")
    return "\n".join(lines) + "\n" + done_hook()


def parse_time(text: str) -> float:
    """wrk's time format (``912.00us``, ``1.23ms``, ``2.00s``, ``1.00m``) in seconds."""
    match = _TIME_RE.match(text.strip())
    if match is None:
        raise InvalidInputError(f"wrk output: cannot read time {text!r}")
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def parse_count(text: str) -> float:
    """wrk's metric format (``52.31k``, ``1.20M``, ``812``) as a number."""
    match = _COUNT_RE.match(text.strip())
    if match is None:
        raise InvalidInputError(f"wrk output: cannot read count {text!r}")
    return float(match.group(1)) * _COUNT_UNITS[match.group(2)]


def parse_wrk_output(text: str) -> RunStats:
    """The numbers of one wrk run, from the JSON line of :func:`lua_script` if present, else
    from wrk's human summary. Raises InvalidInputError naming what is missing."""
    for line in text.splitlines():
        if line.startswith(JSON_MARKER):
            return _from_json(line[len(JSON_MARKER) :])
    return _from_summary(text)


def _from_json(raw: str) -> RunStats:
    try:
        data = orjson.loads(raw)
        us = 1e-6
        requests = int(data["requests"])
        return RunStats(
            requests=requests,
            errors=sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout")),
            duration_s=int(data["duration_us"]) * us,
            # wrk reports percentiles of an empty histogram as 0: no samples is no latency.
            p50_s=float(data["p50_us"]) * us if requests else NAN,
            p90_s=float(data["p90_us"]) * us if requests else NAN,
            p99_s=float(data["p99_us"]) * us if requests else NAN,
            max_s=float(data["max_us"]) * us if requests else NAN,
            mean_s=float(data["mean_us"]) * us if requests else NAN,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"wrk output: malformed {JSON_MARKER.strip()} line: {exc}") from exc


def _from_summary(text: str) -> RunStats:
    requests: int | None = None
    duration = NAN
    mean = max_ = NAN
    pct: dict[str, float] = {}
    errors = 0
    for line in text.splitlines():
        if (m := _REQUESTS_RE.match(line)) is not None:
            requests, duration = int(m.group(1)), parse_time(m.group(2))
        elif (m := _PCT_RE.match(line)) is not None:
            pct[m.group(1)] = parse_time(m.group(2))
        elif (m := _LATENCY_RE.match(line)) is not None:
            mean, max_ = parse_time(m.group(1)), parse_time(m.group(2))
        elif (m := _SOCKET_RE.search(line)) is not None:
            errors += sum(int(g) for g in m.groups())
        elif (m := _NON2XX_RE.search(line)) is not None:
            errors += int(m.group(1))
    if requests is None or math.isnan(duration):
        raise InvalidInputError("wrk output: no 'N requests in T' line (did wrk run?)")
    return RunStats(
        requests=requests,
        errors=errors,
        duration_s=duration,
        p50_s=pct.get("50", NAN),
        p90_s=pct.get("90", NAN),
        p99_s=pct.get("99", NAN),
        max_s=max_,
        mean_s=mean,
    )
