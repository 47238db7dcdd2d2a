"""The pure parts of /api/health: lag per group, thresholds, the worst check wins."""

from __future__ import annotations

from pipeline.api.health import DEGRADED, HEALTHY, UNHEALTHY, group_lag, lag_status, overall


def test_group_lag_counts_committed_and_never_committed_partitions() -> None:
    ends = {("raw", 0): 100, ("raw", 1): 50, ("raw", 2): 30}
    starts = {("raw", 0): 0, ("raw", 1): 0, ("raw", 2): 10}
    lag = group_lag({("raw", 0): 90, ("raw", 1): 50}, ends, starts)
    assert [p["lag"] for p in lag["partitions"]] == [10, 0, 20]  # partition 2: everything still in the log
    assert lag["total_lag"] == 30 and lag["uncommitted_partitions"] == 1
    assert lag["partitions"][2]["committed"] is None


def test_a_committed_offset_past_the_end_is_no_negative_lag() -> None:
    assert group_lag({("t", 0): 12}, {("t", 0): 10}, {})["total_lag"] == 0


def test_lag_thresholds_are_inclusive() -> None:
    assert lag_status(0, 10, 100) == HEALTHY
    assert lag_status(9, 10, 100) == HEALTHY
    assert lag_status(10, 10, 100) == DEGRADED
    assert lag_status(100, 10, 100) == UNHEALTHY
    assert lag_status(None, 10, 100) == DEGRADED


def test_the_worst_check_wins() -> None:
    assert overall({"a": {"status": HEALTHY}, "b": {"status": HEALTHY}}) == HEALTHY
    assert overall({"a": {"status": DEGRADED}, "b": {"status": HEALTHY}}) == DEGRADED
    assert overall({"a": {"status": DEGRADED}, "b": {"status": UNHEALTHY}}) == UNHEALTHY
    assert overall({}) == HEALTHY
