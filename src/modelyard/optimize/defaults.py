"""Default thresholds and sizes of the optimisation commands (one place for the CLI and the API)."""

from __future__ import annotations

#: convert: largest absolute difference in float outputs (labels must all match).
CONVERT_ATOL = 1e-4
#: quantize: largest absolute difference in float outputs.
QUANTIZE_MAX_ABS_DIFF = 0.05
#: quantize: smallest share of rows whose class agrees.
QUANTIZE_MIN_AGREEMENT = 0.99
#: random rows in a sample when there is no warm-up example (or --sample random).
SAMPLE_ROWS = 64
#: profile: batch sizes, seconds per batch size, untimed calls, ORT profiler runs, top ops.
BATCH_SIZES = "1,8,64"
SECONDS = 2.0
WARMUP_CALLS = 10
OP_RUNS = 20
TOP_OPS = 10
