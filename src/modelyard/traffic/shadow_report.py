"""Shadow comparison results per shadow version, merged from every replica's serving stats
(what ``modelyard shadow report`` prints). Pure: rows in, summaries out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelyard.traffic.stats import SHADOW_ROUTE, RouteStats, ShadowStats, StatsRow


@dataclass(frozen=True, slots=True)
class ShadowSummary:
    """One shadow version's comparison over a window (or one interval)."""

    model: str
    version: int
    interval_start: float | None
    requests: int
    errors: int
    compared: int
    agreed: int
    dropped: int
    primary_failed: int
    mean_latency_delta_s: float | None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "interval_start": self.interval_start,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.agreement,
            "dropped": self.dropped,
            "primary_failed": self.primary_failed,
            "mean_latency_delta_s": self.mean_latency_delta_s,
        }


def summarize_shadows(
    rows: Iterable[StatsRow], *, per_interval: bool = False
) -> list[ShadowSummary]:
    """Merge the shadow rows of an endpoint (every replica) per shadow version, and per
    interval too with ``per_interval``. Drops recorded before the version was known (0) are
    folded into the model's single known version when there is exactly one."""
    groups: dict[tuple[str, int, float | None], RouteStats] = {}
    for row in rows:
        if row.route != SHADOW_ROUTE:
            continue
        key = (row.model, row.version, row.interval_start if per_interval else None)
        groups.setdefault(key, RouteStats()).merge(row.stats)
    _fold_unknown_versions(groups)
    out = []
    for (model, version, start), stats in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0.0)
    ):
        shadow = stats.shadow or ShadowStats()
        out.append(
            ShadowSummary(
                model=model,
                version=version,
                interval_start=start,
                requests=stats.requests,
                errors=stats.failures(),
                compared=shadow.compared,
                agreed=shadow.agreed,
                dropped=shadow.dropped,
                primary_failed=shadow.primary_failed,
                mean_latency_delta_s=shadow.mean_latency_delta_s,
            )
        )
    return out


def _fold_unknown_versions(groups: dict[tuple[str, int, float | None], RouteStats]) -> None:
    for model, version, start in [k for k in groups if k[1] == 0]:
        known = [k for k in groups if k[0] == model and k[1] != 0 and k[2] == start]
        if len(known) == 1:
            groups[known[0]].merge(groups.pop((model, version, start)))
