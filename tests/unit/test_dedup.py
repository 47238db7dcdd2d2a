from __future__ import annotations

import pytest

from pipeline.ingest.dedup import RecentIds


def test_first_time_then_duplicate() -> None:
    ids = RecentIds(capacity=10)
    assert ids.first_time("a") is True
    assert ids.first_time("a") is False


def test_capacity_bounds_memory_and_evicts_oldest() -> None:
    ids = RecentIds(capacity=3)
    for k in "abcd":
        ids.first_time(k)
    assert len(ids) == 3
    assert ids.first_time("a") is True  # evicted, so seen as new
    assert ids.first_time("d") is False


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentIds(0)
