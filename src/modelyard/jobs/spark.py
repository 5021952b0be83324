"""Batch scoring on Spark: ``score_dataframe(df, "fraud@production")`` -> a DataFrame with the
model's outputs appended.

The driver resolves the reference once (every executor scores with that same version, even if
the alias moves mid-job), plans the column mapping from ``df.schema`` (a missing or mistyped
column fails here, before any task runs), and hands Spark a ``mapInArrow`` function. On the
executors each Python worker loads the version once from the registry, through the same model
cache and serving core as a server, and scores every Arrow batch of every task it runs.

Executors need the registry: a shared database and artifact store (PostgreSQL + S3) on a
cluster, or the local registry directory in ``local[N]`` mode. Settings are taken on the driver
(``registry=`` / ``settings=`` / ``MODELYARD_*``) and shipped with the function.

Requires ``pyspark`` (``pip install 'modelyard[spark]'``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from modelyard.errors import install_hint
from modelyard.jobs.frames import FrameScorer, plan_frame_scorer
from modelyard.settings import Settings, load_settings


class ArrowBatchScorer:
    """The function given to ``DataFrame.mapInArrow``: record batches in, scored batches out.
    Picklable; the model is loaded in the worker on first use and kept for its lifetime."""

    def __init__(self, plan: FrameScorer) -> None:
        self.plan = plan

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield self.plan.score(batch)


def score_dataframe(
    df: Any,
    model: str,
    *,
    keep: Sequence[str] | None = None,
    columns: dict[str, tuple[str, ...]] | None = None,
    outputs: Sequence[str] | None = None,
    registry: str | None = None,
    settings: Settings | None = None,
) -> Any:
    """Score a Spark DataFrame with ``model`` (``name``, ``name@alias`` or ``name:version``).

    Returns a DataFrame of the ``keep`` columns (default: all of ``df``'s) followed by the
    model's outputs (``outputs`` to choose). ``columns`` maps model inputs to columns as in
    ``modelyard batch --columns`` (key ``""`` for a model's only 2-D input).
    """
    try:
        from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
    except ImportError as exc:
        raise install_hint("pyspark", "spark") from exc
    settings = settings or load_settings(registry=registry)
    plan = plan_frame_scorer(
        settings,
        model,
        to_arrow_schema(df.schema),
        keep=keep,
        columns=columns,
        outputs=outputs,
    )
    return df.mapInArrow(ArrowBatchScorer(plan), from_arrow_schema(plan.schema))
