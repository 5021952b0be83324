"""Summaries across repeated runs and the ratio table that compares systems in one run.

A *point* is one system at one load (connections); it is run several times and summarised by
medians, so one noisy run on a shared machine does not decide the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.bench.stats import NAN, RunStats, median
from modelyard.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class PointResult:
    """All runs of one system at one load. ``note`` says why there are none (e.g. skipped)."""

    system: str
    connections: int
    runs: tuple[RunStats, ...] = ()
    note: str = ""

    @property
    def median_rps(self) -> float:
        return median(r.rps for r in self.runs)

    @property
    def median_p50_s(self) -> float:
        return median(r.p50_s for r in self.runs)

    @property
    def median_p99_s(self) -> float:
        return median(r.p99_s for r in self.runs)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def as_dict(self) -> dict[str, object]:
        return {
            "system": self.system,
            "connections": self.connections,
            "note": self.note,
            "median_rps": _finite_or_none(self.median_rps),
            "median_p50_s": _finite_or_none(self.median_p50_s),
            "median_p99_s": _finite_or_none(self.median_p99_s),
            "requests": self.requests,
            "errors": self.errors,
            "runs": [{k: _finite_or_none(v) for k, v in r.as_dict().items()} for r in self.runs],
        }


@dataclass(frozen=True, slots=True)
class RatioRow:
    """One line of the ratio table. Ratios are this system over the reference system:
    ``rps_ratio`` > 1 means more throughput, ``p99_ratio`` < 1 means a lower tail."""

    system: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    rps_ratio: float
    p99_ratio: float
    note: str = ""


def _finite_or_none(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den) or den == 0:
        return NAN
    return num / den


def ratio_rows(points: Sequence[PointResult], reference: str) -> list[RatioRow]:
    """One row per point, in order, with ratios against the point of system ``reference``.
    Ratios are NaN when the reference has no runs. Raises InvalidInputError if ``reference``
    names no point."""
    ref = next((p for p in points if p.system == reference), None)
    if ref is None:
        known = ", ".join(p.system for p in points) or "none"
        raise InvalidInputError(f"reference system {reference!r} is not among the points ({known})")
    ref_rps, ref_p99 = ref.median_rps, ref.median_p99_s
    return [
        RatioRow(
            system=p.system,
            rps=p.median_rps,
            p50_ms=p.median_p50_s * 1e3,
            p99_ms=p.median_p99_s * 1e3,
            requests=p.requests,
            errors=p.errors,
            rps_ratio=_ratio(p.median_rps, ref_rps),
            p99_ratio=_ratio(p.median_p99_s, ref_p99),
            note=p.note,
        )
        for p in points
    ]


def fmt_rps(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    """Milliseconds with three significant digits (0.0912, 1.23, 45.6, 1,234)."""
    if math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def fmt_ratio(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value < 0.1:
        return f"{value:.2g}x"  # keep two significant digits: 0.0036x, not 0.00x
    if value < 10:
        return f"{value:.2f}x"
    return f"{value:.1f}x" if value < 100 else f"{value:,.0f}x"


TABLE_HEADERS = (
    "system",
    "median req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "req/s vs {ref}",
    "p99 vs {ref}",
)


def row_cells(row: RatioRow) -> list[str]:
    """The table cells of ``row`` as text, in :data:`TABLE_HEADERS` order."""
    if not row.requests and not row.errors:
        errors = "-"
    elif row.errors == 0:
        errors = "0"
    else:
        share = row.errors / (row.requests or row.errors)
        errors = f"{row.errors:,} ({share:.1%})"
    system = f"{row.system} ({row.note})" if row.note else row.system
    return [
        system,
        fmt_rps(row.rps),
        fmt_ms(row.p50_ms),
        fmt_ms(row.p99_ms),
        errors,
        fmt_ratio(row.rps_ratio),
        fmt_ratio(row.p99_ratio),
    ]


def headers(reference: str) -> list[str]:
    return [h.format(ref=reference) for h in TABLE_HEADERS]


def markdown_table(rows: Sequence[RatioRow], reference: str) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (numbers right-aligned)."""
    head = headers(reference)
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in row_cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def append_under_heading(document: str, heading: str, text: str, *, preamble: str) -> str:
    """``document`` with ``text`` added at the end of the ``## `` section titled ``heading``
    (before the next ``## `` heading), so other sections of a shared file stay where they are.

    If ``heading`` is missing, ``preamble`` (which must contain ``heading``) goes at the top,
    followed by the rest of the document (whose own ``# `` title line is dropped when the
    preamble has one).
    """
    if heading not in preamble:
        raise InvalidInputError(f"preamble must contain the heading {heading!r}")
    body = text.strip("\n") + "\n"
    if heading not in document:
        rest = document.strip("\n")
        if rest.startswith("# ") and preamble.startswith("# "):
            rest = rest.split("\n", 1)[1].lstrip("\n") if "\n" in rest else ""
        document = preamble.rstrip("\n") + "\n" + ("\n" + rest + "\n" if rest else "")
    start = document.index(heading) + len(heading)
    nxt = document.find("\n## ", start)
    end = len(document) if nxt < 0 else nxt + 1
    before, after = document[:end].rstrip("\n"), document[end:]
    joined = before + "\n\n" + body
    return joined + ("\n" + after if after else "")


def replace_section(document: str, heading: str, text: str) -> str:
    """``document`` with its ``## `` section titled ``heading`` (up to the next ``## `` heading)
    replaced by ``text``, which starts with that heading; appended at the end when missing.

    For a benchmark that keeps one section of a shared file (BENCHMARKS.md) current; other
    sections stay as they are.
    """
    start = document.find(heading + "\n")
    if start < 0:
        new = (document.rstrip() + "\n\n" if document.strip() else "") + text
    else:
        nxt = document.find("\n## ", start + len(heading))
        new = document[:start] + text.rstrip() + ("\n" + document[nxt:] if nxt >= 0 else "")
    return new.rstrip() + "\n"
