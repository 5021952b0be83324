"""Hypothesis helpers shared by the fuzz tests: weighted choices that stay weighted.

Hypothesis does not draw ``one_of``/``sampled_from`` alternatives uniformly (it favours some, and
small integers), so "now and then" must be spelled as a weighted pool or hostile variants swamp
the valid ones and the deep checks are never reached.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn in proportion to its weight (shrinking to the first)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True once in ``n`` draws (hypothesis favours small integers, so not integers(0, n))."""
    return st.sampled_from([False] * (n - 1) + [True])
