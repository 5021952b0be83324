"""Table-driven tests of the batcher's pure decisions."""

from __future__ import annotations

import pytest

from modelyard.core.batch_policy import BatchConfig, decide_flush, ewma, must_shed, take_rows

CFG = BatchConfig(max_batch_size=8, max_wait_s=0.010, max_concurrent_batches=1)


@pytest.mark.parametrize(
    ("queued", "age", "in_flight", "flush", "wait"),
    [
        (0, 0.0, 0, False, None),  # nothing queued
        (3, 0.0, 0, False, 0.010),  # partial batch, fresh: wait for the rest of max_wait
        (3, 0.004, 0, False, 0.006),
        (3, 0.010, 0, True, None),  # waited long enough: flush on wait
        (8, 0.0, 0, True, None),  # full: flush on size
        (20, 0.0, 0, True, None),
        (8, 1.0, 1, False, None),  # no free batch slot: wait for the running batch
    ],
)
def test_decide_flush(
    queued: int, age: float, in_flight: int, flush: bool, wait: float | None
) -> None:
    d = decide_flush(queued_rows=queued, oldest_age_s=age, batches_in_flight=in_flight, config=CFG)
    assert d.flush is flush
    if wait is None:
        assert d.wait_s is None
    else:
        assert d.wait_s == pytest.approx(wait)


def test_zero_wait_flushes_at_once_when_idle() -> None:
    cfg = BatchConfig(max_batch_size=8, max_wait_s=0.0)
    d = decide_flush(queued_rows=1, oldest_age_s=0.0, batches_in_flight=0, config=cfg)
    assert d.flush


@pytest.mark.parametrize(
    ("rows", "compatible", "limit", "taken"),
    [
        ([], [], 8, 0),
        ([1, 1, 1], [True, True, True], 8, 3),
        ([4, 4, 1], [True, True, True], 8, 2),  # third would overflow
        ([10, 1], [True, True], 8, 1),  # an oversized head still runs, alone
        ([1, 1, 1], [True, False, True], 8, 1),  # stop at the first incompatible request
    ],
)
def test_take_rows(rows: list[int], compatible: list[bool], limit: int, taken: int) -> None:
    assert take_rows(rows, compatible, limit) == taken


@pytest.mark.parametrize(
    ("now", "deadline", "expected", "shed"),
    [
        (10.0, None, 5.0, False),
        (10.0, 10.5, 0.2, False),
        (10.0, 10.1, 0.2, True),
        (10.0, 9.0, 0.0, True),
    ],
)
def test_must_shed(now: float, deadline: float | None, expected: float, shed: bool) -> None:
    assert must_shed(now=now, deadline=deadline, expected_latency_s=expected) is shed


def test_ewma() -> None:
    assert ewma(None, 2.0) == 2.0
    assert ewma(1.0, 2.0, alpha=0.5) == 1.5


@pytest.mark.parametrize(
    ("recent", "threshold", "inline"),
    [
        (None, 0.0005, False),  # never measured: use a thread first
        (0.0001, 0.0005, True),
        (0.0005, 0.0005, False),
        (0.002, 0.0005, False),  # slow models never block the loop
        (0.0001, 0.0, False),  # disabled
    ],
)
def test_run_inline(recent: float | None, threshold: float, inline: bool) -> None:
    from modelyard.core.batch_policy import run_inline

    assert run_inline(recent, threshold) is inline


@pytest.mark.parametrize(
    ("gap", "flush", "wait"),
    [
        (None, False, 0.006),  # no arrival history yet: wait as configured
        (0.001, False, 0.006),  # requests arrive every 1 ms: worth waiting 6 ms for more
        (0.050, True, None),  # a lone client: nobody else will come within the wait
    ],
)
def test_waiting_only_when_more_requests_are_expected(
    gap: float | None, flush: bool, wait: float | None
) -> None:
    d = decide_flush(
        queued_rows=3, oldest_age_s=0.004, batches_in_flight=0, config=CFG, arrival_gap_s=gap
    )
    assert d.flush is flush
    assert d.wait_s == (None if wait is None else pytest.approx(wait))


def test_a_lone_request_after_a_lone_batch_does_not_wait() -> None:
    # a closed-loop client: the last wait caught nobody, so this one flushes at once
    d = decide_flush(
        queued_rows=1, oldest_age_s=0.0, batches_in_flight=0, config=CFG, lone_request=True
    )
    assert d.flush
