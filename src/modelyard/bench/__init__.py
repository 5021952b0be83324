"""Load generation and peer comparison.

* :func:`run_load_test` — a closed-loop load test of any Open Inference Protocol V2 server from
  Python (behind ``modelyard bench URL --model M``).
* :mod:`modelyard.bench.wrk`, :mod:`modelyard.bench.report` — the pieces ``bench/run.py`` uses to
  drive ``wrk`` and compare systems measured in the same run.
"""

from modelyard.bench.loadtest import LoadTestResult, Progress, load_test, run_load_test
from modelyard.bench.stats import RunStats, percentile

__all__ = ["LoadTestResult", "Progress", "RunStats", "load_test", "percentile", "run_load_test"]
