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


def test_remember_marks_the_ids_of_raw_messages_as_seen() -> None:
    import uuid

    import orjson

    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    ids = RecentIds(capacity=100)
    added = ids.remember([orjson.dumps({"event_id": a}), orjson.dumps([{"event_id": b.upper()}, {"x": 1}]),
                          b"{not json", orjson.dumps({"event_id": "not-a-uuid"}), orjson.dumps([1, "x"])])
    assert added == 2
    assert ids.first_time(uuid.UUID(a)) is False and ids.first_time(uuid.UUID(b)) is False  # any spelling
    assert ids.first_time(uuid.UUID(c)) is True


def test_staged_ids_are_duplicates_within_the_batch_and_remembered_only_when_kept() -> None:
    from pipeline.ingest.dedup import StagedIds

    ids = StagedIds(capacity=100)
    assert ids.first_time("a") is True and ids.first_time("a") is False  # a duplicate inside the batch
    ids.drop()  # the batch failed: it is redone, and its ids are new again
    assert ids.first_time("a") is True
    ids.keep()
    assert ids.first_time("a") is False
    ids.drop()
    assert ids.first_time("a") is False  # kept ones survive a later drop


def test_staged_ids_keep_the_capacity_bounds() -> None:
    from pipeline.ingest.dedup import StagedIds

    ids = StagedIds(capacity=3)
    seen = [f"e{i}" for i in range(50)]
    for i in range(0, 50, 5):  # batches of 5, larger than the capacity
        assert all(ids.first_time(k) for k in seen[i:i + 5])
        ids.keep()
        assert len(ids) <= 6
        assert all(ids.first_time(old) is False for old in seen[i + 2:i + 5])  # the last 3
    assert ids.first_time("e0") is True
