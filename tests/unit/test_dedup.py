from __future__ import annotations

import pytest

from pipeline.ingest.dedup import RecentIds


def test_first_time_then_duplicate() -> None:
    ids = RecentIds(capacity=10)
    assert ids.first_time("a") is True
    assert ids.first_time("a") is False


def test_capacity_bounds_memory_and_evicts_oldest() -> None:
    """The last ``capacity`` ids are always remembered; memory never holds more than twice that."""
    ids = RecentIds(capacity=3)
    seen = [f"e{i}" for i in range(100)]
    for i, k in enumerate(seen):
        assert ids.first_time(k) is True
        assert len(ids) <= 6
        assert all(ids.first_time(old) is False for old in seen[max(0, i - 2):i + 1])  # the last 3
    assert ids.first_time("e0") is True  # long evicted, so seen as new


def test_uuids_are_kept_as_ints_and_match_themselves() -> None:
    import uuid

    ids = RecentIds(capacity=10)
    u = uuid.uuid4()
    assert ids.first_time(u) is True
    assert ids.first_time(uuid.UUID(str(u))) is False
    assert all(type(k) is int for gen in (ids._current, ids._previous) for k in gen)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RecentIds(0)
