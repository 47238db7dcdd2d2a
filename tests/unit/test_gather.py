"""How long the worker gathers raw records before a step (``pipeline/ingest/gather.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipeline.ingest.gather import Gathering


@dataclass(frozen=True)
class Rec:
    offset: int


def recs(*offsets: int) -> list[Rec]:
    return [Rec(o) for o in offsets]


def offsets(g: Gathering[str, Rec]) -> dict[str, list[int]]:
    return {p: [r.offset for r in rs] for p, rs in g.records.items()}


def test_waits_until_the_interval_has_passed_since_it_began() -> None:
    g: Gathering[str, Rec] = Gathering(started=100.0, interval_s=1.0, max_records=5000)
    assert g.wait_s(100.0) == 1.0
    g.add({"a": recs(0, 1)})
    assert g.wait_s(100.25) == 0.75  # records in, but not full: go on gathering
    assert g.wait_s(101.0) == 0.0
    assert g.wait_s(105.0) == 0.0  # never negative (a poll timeout)


def test_a_full_batch_steps_at_once() -> None:
    g: Gathering[str, Rec] = Gathering(started=0.0, interval_s=1.0, max_records=5)
    g.add({"a": recs(0, 1, 2)})
    assert not g.full() and g.room() == 2 and g.wait_s(0.1) > 0
    g.add({"b": recs(7, 8)})
    assert g.full() and g.wait_s(0.1) == 0.0
    assert g.room() == 1  # a poll never asks for 0 records (max_records must be >= 1)


def test_polls_append_in_offset_order_per_partition() -> None:
    g: Gathering[str, Rec] = Gathering(started=0.0, interval_s=1.0, max_records=100)
    g.add({"a": recs(10, 11), "b": recs(3)})
    g.add({"a": recs(12), "b": []})
    g.add({"b": recs(4, 5)})
    assert offsets(g) == {"a": [10, 11, 12], "b": [3, 4, 5]}
    assert g.count == 6


def test_a_position_that_went_back_replaces_what_was_gathered_from_there() -> None:
    g: Gathering[str, Rec] = Gathering(started=0.0, interval_s=1.0, max_records=100)
    g.add({"a": recs(10, 11, 12, 13), "b": recs(1)})
    g.add({"a": recs(11, 12)})  # read again from 11 (a seek back, or a restart at the committed offset)
    assert offsets(g) == {"a": [10, 11, 12], "b": [1]}
    assert g.count == 4
    g.add({"a": recs(5)})
    assert offsets(g)["a"] == [5] and g.count == 2


def test_restart_forgets_the_records_but_keeps_the_deadline() -> None:
    g: Gathering[str, Rec] = Gathering(started=0.0, interval_s=1.0, max_records=3)
    g.add({"a": recs(0, 1, 2)})
    assert g.full()
    g.restart()
    assert g.records == {} and g.count == 0 and not g.full()
    assert g.wait_s(0.5) == 0.5
    assert g.dropped == 3


def test_a_poll_after_a_revocation_drops_what_the_old_assignment_gave() -> None:
    g: Gathering[str, Rec] = Gathering(started=0.0, interval_s=1.0, max_records=100)
    g.add({"a": recs(10, 11), "b": recs(3, 4)})
    g.add({"a": recs(10)}, revoked=True)  # the new assignment starts again at the committed offset
    assert offsets(g) == {"a": [10]} and g.count == 1
    assert g.dropped == 4  # what the old assignment gave, counted (the worker's /health shows it)
    g.add({"b": recs(3)})
    assert offsets(g) == {"a": [10], "b": [3]}
    g.add({"b": recs(4)}, revoked=True)
    assert offsets(g) == {"b": [4]} and g.dropped == 6


def test_an_assignment_waiting_to_be_restored_ends_the_gathering() -> None:
    g: Gathering[str, Rec] = Gathering(started=0.0, interval_s=1.0, max_records=100)
    g.add({"a": recs(1)})
    assert g.wait_s(0.1) == 0.9
    assert g.wait_s(0.1, assignment_waiting=True) == 0.0


@pytest.mark.parametrize(("interval_s", "max_records"), [(0.0, 10), (-1.0, 10), (1.0, 0)])
def test_rejects_limits_that_would_never_gather(interval_s: float, max_records: int) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Gathering(started=0.0, interval_s=interval_s, max_records=max_records)
